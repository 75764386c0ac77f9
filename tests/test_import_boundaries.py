"""Package boundaries from DESIGN.md, checked in fresh interpreters through sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _loaded_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return {m.split(".")[0] for m in json.loads(out.stdout)}


@pytest.mark.parametrize("package", ["bayesopt", "param_store", "serving", "jobs.cli"])
def test_light_packages_do_not_load_torch(package: str) -> None:
    loaded = _loaded_after(f"import {package}")
    assert not loaded & {"torch", "botorch", "gpytorch", "ax"}, sorted(loaded & {"torch", "botorch", "gpytorch", "ax"})


def test_bayesopt_core_talks_to_neither_redis_nor_flask() -> None:
    loaded = _loaded_after("import bayesopt, bayesopt.launch_design, bayesopt.observation_table, bayesopt.lattice")
    assert not loaded & {"redis", "flask", "param_store", "serving"}


def test_production_packages_do_not_import_simulations() -> None:
    loaded = _loaded_after("import bayesopt, param_store, serving, jobs.cli")
    assert "simulations" not in loaded
