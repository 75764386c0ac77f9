"""The admin API launches through the same function as ``bayesopt launch``, without ``jobs`` or model code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from jobs.cli import main
from param_store import EmbeddedRedis, ParamStore
from tests.factories import spec_dict

ROOT = Path(__file__).resolve().parents[2]


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    return {name.split(".")[0] for name in names}


def test_no_serving_module_imports_jobs() -> None:
    offenders = [p.name for p in sorted((ROOT / "serving").glob("*.py")) if "jobs" in _imported_packages(p)]
    assert offenders == []


def test_a_bad_spec_gets_422_and_leaves_nothing_stored(store: ParamStore, live) -> None:
    r = requests.post(f"{live.base_url}/v1/experiments", json=spec_dict("ads", control={"x1": 99.0, "x2": 1.0}), timeout=30)
    assert r.status_code == 422 and any("control.x1" in p for p in r.json()["error"]["problems"])
    assert "ads" not in store.list_experiments()


def test_http_and_cli_launch_the_same_way(store: ParamStore, live, monkeypatch: pytest.MonkeyPatch,
                                          redis_server: EmbeddedRedis, namespace: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    r = requests.post(f"{live.base_url}/v1/experiments", json=spec_dict("ads"), timeout=30)
    assert r.status_code == 201
    path = tmp_path / "ads2.json"
    path.write_text(json.dumps(spec_dict("ads2")))
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("BAYESOPT_NAMESPACE", namespace)
    assert main(["launch", str(path), "--json"]) == 0
    by_http = store.load_version("ads", 1)
    by_cli = store.load_version("ads2", 1)
    assert [(a.arm_id, a.weight, a.values) for a in by_http.arms] == [(a.arm_id, a.weight, a.values) for a in by_cli.arms]
    assert store.state("ads").value == store.state("ads2").value == "running"


def test_a_serving_worker_loads_scipy_only_when_it_launches(redis_server: EmbeddedRedis, namespace: str) -> None:
    code = f"""
import sys
from serving import ServingConfig, create_app
from tests.factories import spec_dict
app = create_app(ServingConfig(redis_url={redis_server.url!r}, namespace={namespace!r}))
client = app.test_client()
assert client.get("/v1/experiments").status_code == 200
before = sorted(m for m in ("scipy", "jobs", "torch") if m in sys.modules)
assert client.post("/v1/experiments", json=spec_dict("ads")).status_code == 201
after = sorted(m for m in ("scipy", "jobs", "torch") if m in sys.modules)
print(before, after)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[] ['scipy']"
