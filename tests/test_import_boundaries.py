"""Package boundaries from DESIGN.md, checked in fresh interpreters through sys.modules.

Every production module is imported (the CLI's command modules included), so a new module that breaks a rule
is caught without anyone listing it here; serving is also checked after it has answered parameter requests.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from param_store import EmbeddedRedis, ParamStore
from tests.factories import make_distribution, make_spec

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ("bayesopt", "param_store", "serving", "jobs")
#: What a serving replica or the store must never load: model code and its numerics.
HEAVY = {"torch", "botorch", "gpytorch", "ax", "scipy"}
#: Modules of bayesopt that are model code by design (they load torch); the rest of it must stay light.
MODEL_MODULES = {"policy", "gp", "thompson", "posterior_draws", "screening", "selection", "diagnostics", "device",
                 "ax_bridge", "ax_history", "pareto", "gp_parts", "multitask", "guard", "model_choice"}


def modules_of(package: str) -> list[str]:
    """Every module of a top-level package, found on disk (so new modules are covered without listing them)."""
    path = ROOT / package
    names = [package]
    for info in pkgutil.walk_packages([str(path)], prefix=f"{package}."):
        names.append(info.name)
    return sorted(names)


def loaded_after(code: str) -> set[str]:
    """Top-level names of the modules a fresh interpreter holds after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=180)
    return {m.split(".")[0] for m in json.loads(out.stdout.splitlines()[-1])}


def imports(names: list[str]) -> str:
    return "\n".join(f"import {n}" for n in names)


def test_no_production_module_imports_simulations() -> None:
    names = [m for p in PRODUCTION for m in modules_of(p)]
    assert "jobs.commands.experiment" in names and "jobs.cli" in names  # the walk finds the CLI's commands
    assert "simulations" not in loaded_after(imports(names))


@pytest.mark.parametrize("package", ["param_store", "serving"])
def test_the_store_and_serving_load_no_model_code_at_import(package: str) -> None:
    loaded = loaded_after(imports(modules_of(package)))
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_light_bayesopt_modules_load_no_model_code() -> None:
    light = [m for m in modules_of("bayesopt") if m.rsplit(".", 1)[-1] not in MODEL_MODULES]
    loaded = loaded_after(imports(light))
    assert not loaded & {"torch", "botorch", "gpytorch", "ax"}, sorted(loaded & {"torch", "botorch", "gpytorch", "ax"})


def test_bayesopt_talks_to_neither_redis_nor_flask() -> None:
    loaded = loaded_after(imports(modules_of("bayesopt")))
    assert not loaded & {"redis", "flask", "param_store", "serving", "jobs", "simulations"}


def test_serving_loads_no_model_code_after_answering_parameter_requests(redis_server: EmbeddedRedis, namespace: str) -> None:
    store = ParamStore(redis_server.client(), namespace=namespace)
    spec = make_spec("boundary")
    store.create_experiment(spec)
    store.publish(make_distribution(spec, store.next_version("boundary")))
    code = f"""
from serving import ServingConfig, create_app
app = create_app(ServingConfig(redis_url={redis_server.url!r}, namespace={namespace!r}))
client = app.test_client()
for member in ("m1", "m2"):
    assert client.get("/v1/experiments/boundary/params", query_string={{"member_id": member}}).status_code == 200
assert client.post("/v1/experiments/boundary/params/batch", json={{"member_ids": ["a", "b"]}}).status_code == 200
"""
    loaded = loaded_after(code)
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
