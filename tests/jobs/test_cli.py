"""``bayesopt refit``: progress stage by stage, a record in ``bayesopt status``, exit codes for problems."""

from __future__ import annotations

import json

import pytest

from jobs.cli import main
from param_store import EmbeddedRedis, ParamStore
from tests.jobs.helpers import launch, observe

STUB = ["--policy", "tests.jobs.helpers:stub_propose", "--activation-delay", "0"]


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, redis_server: EmbeddedRedis, namespace: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("BAYESOPT_NAMESPACE", namespace)


def test_refit_prints_each_stage_and_status_shows_the_run(store: ParamStore, capsys: pytest.CaptureFixture) -> None:
    launch(store)
    observe(store, "feed")
    assert main(["refit", "feed", *STUB]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "refit feed"
    stages = [line.split()[0] for line in out[1:-1] if " s" in line and "..." not in line]
    assert stages == ["load", "import", "policy", "fit", "sample", "validate", "publish"]
    assert out[-1].startswith("feed: published version 2 in ")

    assert main(["status", "feed", "--json"]) == 0
    [run] = json.loads(capsys.readouterr().out)["recent_runs"]
    assert run["status"] == "published" and run["version"] == 2


def test_refit_again_says_nothing_changed(store: ParamStore, capsys: pytest.CaptureFixture) -> None:
    launch(store)
    observe(store, "feed")
    main(["refit", "feed", *STUB])
    capsys.readouterr()
    assert main(["refit", "feed", *STUB]) == 0
    assert "feed: skipped unchanged" in capsys.readouterr().out
    assert main(["refit", "feed", "--force", "--json", *STUB]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 3


def test_broken_data_exits_1_and_names_the_row(
    store: ParamStore, raw_redis, raw_keys, capsys: pytest.CaptureFixture
) -> None:
    launch(store)
    observe(store, "feed")
    raw_redis.hset(raw_keys.observations("feed"), "1|control|applies|online|n", "-1")
    assert main(["refit", "feed", *STUB]) == 1
    out = capsys.readouterr().out
    assert "feed: kept invalid_data" in out
    assert "problem: version 1, arm control, metric applies, source online: count is -1.0" in out


def test_refit_all_uses_the_pool_for_running_experiments(store: ParamStore, capsys: pytest.CaptureFixture) -> None:
    for name in ("one", "two", "three"):
        launch(store, name)
        observe(store, name)
    store.transition("three", "paused")
    assert main(["refit", "--all", "--workers", "2", *STUB]) == 0
    out = capsys.readouterr().out
    assert "one: published version 2" in out and "two: published version 2" in out and "three" not in out
