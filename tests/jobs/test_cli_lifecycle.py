"""The ``bayesopt`` CLI as a user runs it: a real process, a real server through REDIS_URL, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from param_store import EmbeddedRedis
from tests.factories import spec_dict

EXAMPLE = Path(__file__).parents[2] / "simulations" / "specs" / "feed_example.yaml"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, env=env, timeout=120)


def _env(redis_server: EmbeddedRedis, namespace: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_server.url, "BAYESOPT_NAMESPACE": namespace}


def test_launch_status_pause_resume_rollback_end(redis_server: EmbeddedRedis, namespace: str) -> None:
    env = _env(redis_server, namespace)
    launched = _cli("launch", str(EXAMPLE), "--json", env=env)
    assert launched.returncode == 0, launched.stderr
    dist = json.loads(launched.stdout)
    assert dist["version"] == 1 and dist["arms"][0]["arm_id"] == "control"
    status = json.loads(_cli("status", "feed_example", "--json", env=env).stdout)
    assert status["state"] == "running" and status["current_version"] == 1
    assert _cli("pause", "feed_example", env=env).stdout.strip() == "feed_example: paused"
    again = _cli("pause", "feed_example", env=env)
    assert again.returncode == 2
    assert again.stderr.strip() == "bayesopt: error: experiment 'feed_example' is paused; it cannot become paused (allowed: ended, running)"
    assert _cli("resume", "feed_example", env=env).returncode == 0
    rolled = _cli("rollback", "feed_example", "1", env=env)
    assert "published version 2 with the content of version 1" in rolled.stdout
    history = json.loads(_cli("history", "feed_example", "--json", env=env).stdout)
    assert [h["version"] for h in history] == [1, 2] and history[1]["source_version"] == 1
    assert _cli("end", "feed_example", env=env).returncode == 0
    assert _cli("rollback", "feed_example", "7", env=env).returncode == 2


def test_bad_spec_exits_2_with_one_line_per_problem(redis_server: EmbeddedRedis, namespace: str, tmp_path: Path) -> None:
    bad = spec_dict(guardrails=[{"metric": "jobs", "lower": 0.1}], traffic={"control_share": 0})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = _cli("launch", str(path), env=_env(redis_server, namespace))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "bayesopt: error: guardrails[0].metric: unknown metric 'jobs' (declared: applies, sessions)",
        "bayesopt: error: traffic.control_share: must be in (0, 1): control is served in every window, got 0.0",
    ]
    assert result.stdout == ""


def test_unknown_experiment_and_missing_file_exit_2(redis_server: EmbeddedRedis, namespace: str, tmp_path: Path) -> None:
    env = _env(redis_server, namespace)
    missing = _cli("status", "nope", env=env)
    assert missing.returncode == 2 and "no experiment named 'nope'" in missing.stderr
    no_file = _cli("launch", str(tmp_path / "absent.yaml"), env=env)
    assert no_file.returncode == 2 and "cannot read" in no_file.stderr


def test_embedded_server_is_shared_across_cli_calls(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["BAYESOPT_HOME"] = str(tmp_path / "home")
    try:
        assert _cli("launch", str(EXAMPLE), env=env).returncode == 0
        listed = _cli("status", env=env)
        assert listed.returncode == 0 and "feed_example: running, current version 1" in listed.stdout
    finally:
        stopped = _cli("redis", "stop", env=env).stdout.strip()
        assert stopped == f"embedded redis stopped; its data is kept in {(tmp_path / 'home' / 'redis').resolve()}"
    assert not (tmp_path / "home" / "redis" / "redis.sock").exists() or not EmbeddedRedis(tmp_path / "home" / "redis").is_running()
