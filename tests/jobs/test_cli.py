"""``bayesopt refit``: progress stage by stage, a record in ``bayesopt status``, exit codes for problems."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import jobs.cli
from jobs.cli import build_parser, main, plugin_commands
from jobs.commands import ExitCode
from jobs.commands.serve import serving_config
from jobs.settings import Settings
from param_store import DEFAULT_NAMESPACE, EmbeddedRedis, ParamStore
from param_store.notify import DEFAULT_POLL_INTERVAL_S
from serving.config import ServingConfig
from tests.jobs.helpers import launch, observe
from tests.jobs.procs import ROOT, cli_env

EXAMPLE = ROOT / "simulations" / "specs" / "feed_example.yaml"

STUB = ["--policy", "tests.jobs.helpers:StubPolicy", "--activation-delay", "0"]


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
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "refit 2 running experiments on pool (2 at a time, 1 threads each)"
    progress = sorted(line.split(" ", 1)[1].split(" in ")[0] for line in out[1:3])
    assert progress == ["one: published version 2", "two: published version 2"]
    assert [line.split()[:3] for line in out[3:6]] == [
        ["experiment", "outcome", "seconds"], ["one", "published", "v2"], ["two", "published", "v2"]]
    assert out[6] == "2 published" and not any("three" in line for line in out)


def test_refit_all_refuses_an_address_the_pool_cannot_use(store: ParamStore, capsys: pytest.CaptureFixture) -> None:
    launch(store)
    observe(store, "feed")
    assert main(["refit", "--all", "--executor", "pool", "--address", "ray://head:10001", *STUB]) == ExitCode.USAGE
    assert capsys.readouterr().err.strip() == "bayesopt: error: --address: only --executor ray takes a cluster address"
    assert store.current_version("feed") == 1


# -- the command line as operators use it: version, exit codes, JSON, pipes, settings, plugins ------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_version_is_the_installed_distributions(redis_server: EmbeddedRedis, namespace: str) -> None:
    result = _cli("--version", env=cli_env(redis_server.url, namespace))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"bayesopt {metadata.version('bayesopt-service')}"


@pytest.mark.parametrize(
    "argv",
    [["refit", "nope", *STUB], ["status", "nope"], ["history", "nope"], ["rollback", "nope", "1"], ["pause", "nope"],
     ["resume", "nope"], ["end", "nope"], ["status", "nope", "--json"]],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_an_unknown_experiment_exits_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == ExitCode.USAGE == 2
    captured = capsys.readouterr()
    assert captured.err == "bayesopt: error: no experiment named 'nope'\n"
    assert captured.out == ""


def test_bad_input_exits_2_and_failures_exit_1(store: ParamStore, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    launch(store)
    assert main(["rollback", "feed", "7"]) == 2  # a version never published
    assert main(["end", "feed"]) == 0 and main(["resume", "feed"]) == 2  # ended is final
    monkeypatch.setenv("BAYESOPT_POLL_INTERVAL_S", "soon")
    assert main(["status"]) == 2
    assert "BAYESOPT_POLL_INTERVAL_S: must be a number of seconds, got 'soon'" in capsys.readouterr().err
    monkeypatch.delenv("BAYESOPT_POLL_INTERVAL_S")
    monkeypatch.setenv("REDIS_URL", "unix:///nonexistent/redis.sock")
    assert main(["status"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("bayesopt: error: ")


def test_every_reporting_command_prints_json(store: ParamStore, capsys: pytest.CaptureFixture) -> None:
    def run(*argv: str) -> object:
        assert main(list(argv)) == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)

    assert run("launch", str(EXAMPLE), "--json")["version"] == 1
    launch(store)
    observe(store, "feed")
    assert run("refit", "feed", "--json", *STUB)["status"] == "published"
    assert run("status", "feed", "--json")["current_version"] == 2
    assert {doc["name"] for doc in run("status", "--json")} == {"feed", "feed_example"}
    assert [row["version"] for row in run("history", "feed", "--json")] == [1, 2]
    assert run("rollback", "feed", "1", "--json") == {"experiment": "feed", "version": 3, "source_version": 1}
    assert run("pause", "feed", "--json") == {"experiment": "feed", "state": "paused"}
    assert run("resume", "feed", "--json")["state"] == "running"
    assert run("redis", "url", "--json")["embedded"] is False  # REDIS_URL is set by the fixture


def test_status_text_reads_like_a_report(store: ParamStore, capsys: pytest.CaptureFixture) -> None:
    launch(store)
    observe(store, "feed")
    main(["refit", "feed", *STUB])
    capsys.readouterr()
    assert main(["status", "feed"]) == 0
    out = capsys.readouterr().out
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.search(rf"version 2 \(created {iso}, spec ", out), out
    assert re.search(rf"^    {iso}  published version 2 in \d+\.\d{{1,3}} s \(load \d", out, re.MULTILINE), out
    [run_line] = [line for line in out.splitlines() if "published version 2 in" in line]
    assert not re.search(r"\d\.\d{4,}|\d{10}", run_line), run_line  # no raw epoch seconds, no unrounded timings


def test_a_closed_pipe_ends_quietly(store: ParamStore, redis_server: EmbeddedRedis, namespace: str) -> None:
    launch(store)
    for _ in range(800):  # ~90 kB of JSON: more than a pipe holds, so the CLI is still writing when head exits
        store.rollback("feed", 1)
    env = cli_env(redis_server.url, namespace)
    for reader in ("head -c1", "true"):
        command = f"{shlex.quote(sys.executable)} -m jobs.cli history feed --json | {reader}; exit ${{PIPESTATUS[0]}}"
        result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
        assert result.stderr == "" and result.returncode == ExitCode.FAILURE


def test_serve_reads_the_environment_like_the_wsgi_entry(redis_server: EmbeddedRedis) -> None:
    env = {"REDIS_URL": redis_server.url, "BAYESOPT_NAMESPACE": "svc", "BAYESOPT_POLL_INTERVAL_S": "0.25",
           "BAYESOPT_ASSIGNMENT_MODE": "coupled", "BAYESOPT_COUPLED_EXPERIMENTS": "feed, search",
           "BAYESOPT_ADMIN_TOKEN": "secret"}
    parser = build_parser(["serve"])
    config = serving_config(parser.parse_args(["serve"]), Settings.from_env(env))
    assert config == ServingConfig.from_env(env)  # serving.wsgi's path: the same reader, the same result
    assert (config.poll_interval_s, config.mode, config.namespace, config.admin_token) == (0.25, "coupled", "svc", "secret")
    assert config.mode_for("search") == "coupled"

    flags = parser.parse_args(["serve", "--poll-interval", "2", "--mode", "epoch", "--coupled", "ads"])
    config = serving_config(flags, Settings.from_env(env))
    assert (config.poll_interval_s, config.mode, dict(config.modes)) == (2.0, "epoch", {"ads": "coupled"})

    defaults = Settings.from_env({"REDIS_URL": redis_server.url})
    config = serving_config(parser.parse_args(["serve"]), defaults)
    assert (config.poll_interval_s, config.namespace) == (DEFAULT_POLL_INTERVAL_S, DEFAULT_NAMESPACE)
    assert defaults.namespace == DEFAULT_NAMESPACE


def test_every_argument_has_help() -> None:
    parser = build_parser()  # every command, the plugins' too
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert {"demo", "simulate", "bench", "serve", "status"} <= set(commands.choices)
    missing = [f"{name} {action.dest}" for name, sub in commands.choices.items() for action in sub._actions
               if not action.help]
    assert missing == []


def test_the_cli_never_names_simulations_and_production_commands_never_load_it(
    redis_server: EmbeddedRedis, namespace: str
) -> None:
    sources = [Path(jobs.cli.__file__), *Path(jobs.cli.__file__).parent.joinpath("commands").glob("*.py")]
    assert [str(p) for p in sources if "simulations" in p.read_text()] == []
    assert set(plugin_commands()) >= {"demo", "simulate", "bench"}
    code = ("import sys; from jobs.cli import main; code = main(['status']); "
            "print(code, 'simulations' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env(redis_server.url, namespace),
                            capture_output=True, text=True, timeout=120)
    assert result.stderr.strip() == "0 False", result.stderr


@pytest.mark.parametrize("policy", ["nope", "no_such_module:Thing", "tests.jobs.helpers:NoSuchPolicy",
                                    "tests.jobs.helpers:launch"])
def test_a_bad_policy_reference_is_bad_input(store: ParamStore, capsys: pytest.CaptureFixture, policy: str) -> None:
    launch(store)
    assert main(["refit", "feed", "--policy", policy]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayesopt: error: policy: ") and "Traceback" not in err
    assert store.runs("feed") == []  # refused before any run, nothing recorded
