"""Every bad spec value is refused where an experiment is launched, naming its field, and nothing is stored.

Both doors: ``bayesopt launch FILE`` (exit code 2, one ``bayesopt: error: <field>: ...`` line per problem on
stderr) and ``POST /v1/experiments`` (422 with the problems in the JSON body).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from jobs.cli import main
from param_store import EmbeddedRedis, ParamStore
from tests.factories import BAD_SPEC_VALUES, spec_dict
from tests.factories import spec_dict_with as bad_spec
from tests.serving.conftest import LiveServer, serve  # noqa: F401 - the app fixture, over real HTTP

CASES = pytest.mark.parametrize(("path", "value"), BAD_SPEC_VALUES, ids=[p for p, _ in BAD_SPEC_VALUES])
TOKEN = "launch-admin-token"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, redis_server: EmbeddedRedis, namespace: str) -> None:
    """``jobs.cli.main`` in this process, against the session's Redis and this test's namespace."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("BAYESOPT_NAMESPACE", namespace)


@pytest.fixture
def admin(serve: Callable[..., LiveServer]) -> Callable[..., requests.Response]:  # noqa: F811
    """POST a spec document to ``/v1/experiments`` of a live app with an admin token."""
    live = serve(admin_token=TOKEN)

    def post(doc: Any) -> requests.Response:
        return requests.post(f"{live.base_url}/v1/experiments", json=doc, timeout=30,
                             headers={"Authorization": f"Bearer {TOKEN}"})

    post.base_url = live.base_url  # type: ignore[attr-defined]
    return post


def _listed(base_url: str) -> list[str]:
    response = requests.get(f"{base_url}/v1/experiments", timeout=10)
    assert response.status_code == 200
    return [e["name"] for e in response.json()["experiments"]]


@CASES
def test_cli_launch_exits_2_naming_the_field_and_stores_nothing(
    cli: None, store: ParamStore, tmp_path: Path, capsys: pytest.CaptureFixture, path: str, value: Any
) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(bad_spec(path, value)))
    assert main(["launch", str(spec_file)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines and all(line.startswith("bayesopt: error: ") for line in lines), captured.err
    assert any(line.startswith(f"bayesopt: error: {path}: ") for line in lines), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert store.list_experiments() == []


@CASES
def test_http_launch_is_422_naming_the_field_and_stores_nothing(
    admin: Callable[..., requests.Response], store: ParamStore, path: str, value: Any
) -> None:
    response = admin(bad_spec(path, value))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_spec"
    assert any(p.startswith(f"{path}: ") for p in error["problems"]), error
    assert path in error["message"]
    assert store.list_experiments() == []
    assert _listed(admin.base_url) == []  # type: ignore[attr-defined]


def test_the_same_documents_launch_once_the_value_is_fixed(
    cli: None, admin: Callable[..., requests.Response], store: ParamStore, tmp_path: Path
) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec_dict("by_cli")))
    assert main(["launch", str(spec_file)]) == 0
    assert admin(spec_dict("by_http")).status_code == 201
    assert sorted(store.list_experiments()) == ["by_cli", "by_http"]
    assert sorted(_listed(admin.base_url)) == ["by_cli", "by_http"]  # type: ignore[attr-defined]
