"""The closed loop end to end: real Redis, the real serving app over HTTP, the real refit job, tiny sizes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jobs.cli import main as cli_main
from param_store import EmbeddedRedis, ParamStore
from simulations.loop import LoopConfig, run_closed_loop
from simulations.report import summarize, write_run_report

TINY = {"num_draws": 64, "num_candidates": 64, "max_arms": 6}


@pytest.fixture(scope="module")
def gp_run(redis_server: EmbeddedRedis) -> tuple[object, ParamStore]:
    config = LoopConfig(policy="gp", seed=1, hours=3, members_per_hour=400, policy_overrides=TINY, name="loop_gp")
    result = run_closed_loop(config, redis_url=redis_server.url, namespace="loopgp", progress=False)
    return result, ParamStore(redis_server.client(), namespace="loopgp")


def test_versions_advance_every_hour_and_the_server_serves_each(gp_run) -> None:
    result, store = gp_run
    assert [h.version for h in result.hours] == [1, 2, 3]  # launch design, then one refit per hour
    assert result.final_version == 4
    assert all(h.refit["status"] == "published" for h in result.hours), [h.refit for h in result.hours]
    assert [r["status"] for r in store.runs("loop_gp")] == ["published"] * 3
    # every refit after the launch came from the GP policy, not the launch design
    assert store.load_version("loop_gp", 2).diagnostics["kind"] == "constrained_ts"
    # each version became valid exactly at the start of its simulated hour (activation delay 0)
    for h in result.hours[1:]:
        assert store.load_version("loop_gp", h.version).valid_from == h.time


def test_every_published_version_keeps_the_risk_budget_and_control_its_share(gp_run) -> None:
    """The launch design included: the expected unsafe share, recomputed from the stored record itself, never
    exceeds max_unsafe_share, and control never gets less than its configured share."""
    result, store = gp_run
    spec = store.load_spec("loop_gp")
    for version in range(1, result.final_version + 1):
        dist = store.load_version("loop_gp", version)
        arms = dist.diagnostics["arms"]
        expected = sum(a.weight * (1 - arms[a.arm_id]["p_feasible"]) for a in dist.arms if a.arm_id != "control")
        assert expected <= spec.policy.max_unsafe_share + 1e-9, (version, expected)
        assert dist.diagnostics["risk"]["expected_unsafe_share"] == pytest.approx(expected, abs=1e-6)
        assert dist.control_arm.weight >= spec.traffic.control_share - 1e-12


def test_stored_observations_add_up_to_the_members_served(gp_run) -> None:
    result, store = gp_run
    stats = store.observations("loop_gp")
    assert set(stats["source"]) == {"online"}
    for h in result.hours:
        assert h.members > 100  # ~400 an hour, swinging with the time of day
        rows = stats[stats["version"] == h.version]
        per_metric = rows.groupby("metric")["count"].sum()
        assert set(per_metric.index) == {"engaged_sessions", "shares", "applies"}
        assert (per_metric == h.members).all(), (h.version, per_metric.to_dict(), h.members)
        assert h.outcomes_posted == h.members
        assert sum(a["members"] for a in h.arms) == h.members
        # members landed on the arms of the version served, roughly by weight (control gets its 20%)
        served = {a["arm_id"]: a["members"] for a in h.arms}
        assert set(rows["arm_id"]) <= set(served)
        control = next(a for a in h.arms if a["arm_id"] == "control")
        assert abs(control["members"] / h.members - control["weight"]) < 0.1


def test_metrics_are_recorded_per_hour(gp_run) -> None:
    result, _ = gp_run
    frame = result.frame()
    assert list(frame["step"]) == [0, 1, 2]
    for h in result.hours:
        m = h.metrics
        assert 0.0 <= m.unsafe_share <= 1.0
        assert set(m.guardrails) == {"applies", "shares"}
        assert all(math.isfinite(v) for v in (m.objective, m.regret, m.relative_regret, m.entropy))
        assert m.num_arms == len([a for a in h.arms if a["weight"] > 0])
    np.testing.assert_allclose([h.cumulative_relative_regret for h in result.hours],
                               np.cumsum([h.metrics.relative_regret for h in result.hours]))
    assert result.hours[0].models is None  # the launch design fits no model
    assert all(h.models == dict.fromkeys(("engaged_sessions", "shares", "applies"), "online") for h in result.hours[1:])
    # the launch hour is judged by the truth: the best feasible arm beats control, so serving control costs
    assert result.optimum["relative"]["engaged_sessions"] > 0


def test_report_files_are_written(gp_run, tmp_path) -> None:
    result, _ = gp_run
    paths = write_run_report(result, tmp_path / "report")
    for key in ("regret", "metrics", "traffic"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(paths["summary"].read_text())["summary"]
    assert summary["hours"] == 3 and summary["policy"] == "gp" and summary["published"] == 3
    assert summary["members"] == sum(h.members for h in result.hours)
    assert len(paths["hours"].read_text().splitlines()) == 4
    assert summarize(result)["cumulative_regret_pct_h"] == pytest.approx(100 * result.hours[-1].cumulative_relative_regret)


@pytest.mark.parametrize("policy", ["ab_grid", "arm_ts"])
def test_baselines_run_through_the_same_refit_job(redis_server: EmbeddedRedis, namespace: str, policy: str) -> None:
    config = LoopConfig(policy=policy, seed=2, hours=2, members_per_hour=300, policy_overrides=TINY, name="loop_b")
    result = run_closed_loop(config, redis_url=redis_server.url, namespace=namespace, progress=False)
    store = ParamStore(redis_server.client(), namespace=namespace)
    assert [h.version for h in result.hours] == [1, 2]
    assert store.load_version("loop_b", 2).diagnostics["kind"] == policy
    assert store.load_version("loop_b", 2).diagnostics["refit"]["period"] is not None


def test_demo_command_writes_a_report(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    code = cli_main(["demo", "--hours", "2", "--members-per-hour", "300", "--num-draws", "64", "--num-candidates", "64",
                     "--max-arms", "6", "--compare", "uniform", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and "| policy |" in printed
    for name in ("summary.json", "hours.csv", "regret.png", "metrics.png", "traffic.png", "uniform/summary.json"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "summary.json").read_text())
    assert [s["policy"] for s in doc["comparison"]] == ["gp", "uniform"]


def test_simulate_command_writes_the_table(tmp_path, capsys) -> None:
    out = tmp_path / "study"
    code = cli_main(["simulate", "--policy", "uniform,ab_grid", "--seeds", "1", "--hours", "2", "--members-per-hour", "200",
                     "--max-arms", "6", "--out", str(out)])
    assert code == 0
    table = (out / "table.md").read_text()
    assert "uniform" in table and "ab_grid" in table
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == ["ab_grid-seed0.json", "uniform-seed0.json"]
    assert (out / "study.png").stat().st_size > 0
    assert "| policy |" in capsys.readouterr().out
