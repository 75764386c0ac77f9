"""The study's statistics on synthetic numbers, and a small study end to end (runs, cache, JSON, tables)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jobs.cli import main as cli_main
from simulations.study import (
    PARENT_POLL_S,
    StudyDesign,
    StudyMismatchError,
    analyse_variant,
    compare,
    paired_difference,
    reliability_table,
    run_path,
    run_variant_study,
    stream_spread,
)

TINY = {"num_draws": 64, "num_candidates": 64, "max_arms": 6}


# -- paired intervals ----------------------------------------------------------------------------------------------
def test_identical_inputs_give_a_zero_width_interval_at_zero() -> None:
    x = [50.0, 61.5, 70.25, 44.0]
    i = paired_difference(x, x)
    assert (i.n, i.mean, i.sd, i.lower, i.upper) == (4, 0.0, 0.0, 0.0, 0.0)
    assert not i.excludes_zero


def test_a_known_difference_is_covered_and_the_interval_is_the_t_interval() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(80, 15, size=10)
    a = b + 12.0 + rng.normal(0, 2, size=10)  # a loses 12 on average: the pairs remove the world's spread
    i = paired_difference(a, b)
    assert i.lower < 12.0 < i.upper and i.excludes_zero and i.lower > 0
    d = a - b
    half = 2.262157162740992 * d.std(ddof=1) / math.sqrt(10)  # t(0.975, 9)
    assert (i.lower, i.upper) == pytest.approx((d.mean() - half, d.mean() + half))
    # unpaired, the world's spread would swamp the difference; paired, the interval is narrow
    assert i.upper - i.lower < 6


def test_the_interval_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(2000):
        b = rng.normal(0, 10, size=8)
        hits += (lambda i: i.lower <= 3.0 <= i.upper)(paired_difference(b + 3.0 + rng.normal(0, 4, 8), b))
    assert 0.93 <= hits / 2000 <= 0.97


def test_one_pair_gives_no_bound_and_bad_input_is_refused() -> None:
    i = paired_difference([3.0], [1.0])
    assert i.mean == 2.0 and i.lower == -math.inf and i.upper == math.inf and not i.excludes_zero
    with pytest.raises(ValueError, match="equally long"):
        paired_difference([], [])


def _runs(policy: str, values: dict[tuple[int, int], float], **extra: float) -> list[dict]:
    return [{"policy": policy, "seed": s, "stream": r, "cumulative_regret_pct_h": v, **extra} for (s, r), v in values.items()]


def test_compare_pairs_runs_or_world_seeds() -> None:
    ref = _runs("gp", {(0, 0): 60, (0, 1): 70, (1, 0): 80, (1, 1): 90, (2, 0): 50, (2, 1): 58})
    same = _runs("arm_ts", {(0, 0): 70, (0, 1): 80, (1, 0): 90, (1, 1): 100, (2, 0): 60, (2, 1): 68})
    c = compare(same, ref)
    assert c["unit"] == "run" and c["n"] == 6 and c["mean"] == pytest.approx(10) and c["sd"] == pytest.approx(0)
    assert c["by_seed"]["n"] == 3 and c["by_seed"]["mean"] == pytest.approx(10)
    fewer = _runs("ax", {(0, 0): 75, (1, 0): 95, (2, 0): 64})  # one stream: paired on world seeds
    c = compare(fewer, ref)
    assert c["unit"] == "world seed" and c["n"] == 3
    assert c["mean"] == pytest.approx(np.mean([75 - 65, 95 - 85, 64 - 54]))
    with pytest.raises(ValueError, match="no world seed in common"):
        compare(_runs("ax", {(9, 0): 1.0}), ref)


def test_stream_spread_is_the_within_seed_sd_averaged() -> None:
    runs = _runs("gp", {(0, 0): 60, (0, 1): 70, (1, 0): 80, (1, 1): 100, (2, 0): 50})
    assert stream_spread(runs) == pytest.approx(np.mean([np.std([60, 70], ddof=1), np.std([80, 100], ddof=1)]))
    assert stream_spread(_runs("gp", {(0, 0): 1.0, (1, 0): 2.0})) is None


# -- reliability -----------------------------------------------------------------------------------------------------
def test_the_reliability_table_bins_predictions_and_counts_what_was_feasible() -> None:
    pairs = [(0.1, 0), (0.3, 1), (0.6, 1), (0.79, 0), (0.85, 1), (0.92, 1), (0.96, 1), (0.99, 0), (1.0, 1),
             (0.5, 1, 0.5, 3)]  # weight and hour may follow
    rows = reliability_table(pairs)
    assert [r["bin"] for r in rows] == ["[0, 0.5)", "[0.5, 0.8)", "[0.8, 0.9)", "[0.9, 0.95)", "[0.95, 1]"]
    assert [r["count"] for r in rows] == [2, 3, 1, 1, 3]
    assert rows[0]["mean_predicted"] == pytest.approx(0.2) and rows[0]["observed_feasible"] == 0.5
    assert rows[1]["observed_feasible"] == pytest.approx(2 / 3)
    assert rows[1]["weight_observed_feasible"] == pytest.approx(1.5 / 2.5)
    assert rows[4]["mean_predicted"] == pytest.approx((0.96 + 0.99 + 1.0) / 3)
    assert rows[4]["observed_feasible"] == pytest.approx(2 / 3)
    empty = reliability_table([(0.1, 1)])
    assert empty[3]["count"] == 0 and empty[3]["mean_predicted"] is None and empty[3]["observed_feasible"] is None


# -- goals -----------------------------------------------------------------------------------------------------------
def _summary(policy: str, seed: int, stream: int, regret: float, **changes) -> dict:
    doc = {"policy": policy, "variant": "base", "seed": seed, "stream": stream, "cumulative_regret_pct_h": regret,
           "regret_floor_pct_h": 25.0, "regret_over_floor": regret / 25.0, "final_lift_pct": 1.5,
           "final_best_lift_pct": 2.5, "unsafe_pct": 2.0, "unsafe_after_launch_pct": 2.0, "worst_hour_unsafe_pct": 6.0,
           "hours_to_1pct": 5.0, "hours_to_recover_1pct": None, "risk_expected_unsafe_mean": 0.04,
           "risk_expected_unsafe_max": 0.05, "max_unsafe_share_bound_pct": 5.0,
           "calibration": [[0.95, 1.0, 0.1, 1], [0.6, 0.0, 0.2, 2]]}
    return {**doc, **changes}


def test_goals_are_judged_for_the_reference() -> None:
    gp = [_summary("gp", s, r, 30.0 + s + r) for s in range(3) for r in range(2)]
    worse = [_summary("arm_ts", s, r, 50.0 + s + 2 * r, calibration=[]) for s in range(3) for r in range(2)]
    result = analyse_variant(gp + worse)
    goals = {g["goal"]: g for g in result["goals"]}
    assert goals["gp has the lowest mean cumulative regret"]["passed"] is True
    assert goals["mean guardrail-breaking traffic (true metrics, all hours)"]["passed"] is True
    assert goals["worst single hour after launch (over all runs)"]["passed"] is True
    assert goals["cumulative regret within 1.5x the control-share floor"]["passed"] is True  # 31.5 / 25
    row = {r["policy"]: r for r in result["rows"]}
    assert row["gp"]["stream_sd"] == pytest.approx(np.std([0, 1], ddof=1))
    assert row["gp"]["reliability"][4]["count"] == 6 and row["arm_ts"]["reliability"] is None
    assert row["arm_ts"]["vs_reference"]["mean"] == pytest.approx(20.5)
    # a policy the reference cannot be told from, unsafe hours, regret far above the floor: each goal fails
    close = [_summary("utility", s, r, 30.0 + s + r + (1 if r else -1)) for s in range(3) for r in range(2)]
    bad = [_summary("gp", s, r, 40.0, worst_hour_unsafe_pct=12.0, unsafe_pct=6.0) for s in range(3) for r in range(2)]
    goals = {g["goal"]: g["passed"] for g in analyse_variant(bad + worse)["goals"]}
    assert goals == {"gp has the lowest mean cumulative regret": True,
                     "mean guardrail-breaking traffic (true metrics, all hours)": False,
                     "worst single hour after launch (over all runs)": False,
                     "cumulative regret within 1.5x the control-share floor": False}
    assert analyse_variant(gp + close)["goals"][0]["passed"] is False
    # the row names the closest competitor on mean regret, not the one with the widest interval
    noisy = [_summary("uniform", s, r, 45.0 + 30 * (-1) ** (s + r)) for s in range(3) for r in range(2)]
    assert analyse_variant(gp + close + noisy)["goals"][0]["value"].startswith("closest: utility")
    # after a shift: every run must be back within 12 hours
    shifted = [_summary("gp", s, 0, 40.0, variant="shift", hours_to_recover_1pct=h) for s, h in enumerate([3.0, 9.0])]
    goal = analyse_variant(shifted)["goals"][-1]
    assert goal["goal"].startswith("back within 1%") and goal["passed"] is True
    shifted.append(_summary("gp", 7, 0, 40.0, variant="shift", hours_to_recover_1pct=math.inf))
    goal = analyse_variant(shifted)["goals"][-1]
    assert goal["passed"] is False and "slowest never" in goal["value"]


def test_the_design_gives_each_policy_its_streams() -> None:
    design = StudyDesign(variants=("base", "shift"), policies=("uniform", "arm_ts", "ax"), seeds=(0, 1), streams=(0, 1, 2),
                         baseline_streams=(0, 1), policy_streams={"ax": (0,)}, hours=4)
    assert design.policies[0] == "gp"  # the reference is always run
    assert [design.streams_of(p) for p in ("gp", "uniform", "arm_ts", "ax")] == [(0, 1, 2), (0, 1), (0, 1), (0,)]
    configs = design.configs()
    assert len(configs) == 2 * 2 * (3 + 2 + 2 + 1)
    assert {(c.variant, c.members_per_hour, c.hours) for c in configs} == {("base", 30_000, 4), ("shift", 30_000, 4)}
    with pytest.raises(ValueError, match="unknown world variant"):
        StudyDesign(variants=("d5",))
    with pytest.raises(ValueError, match="unknown policies"):
        StudyDesign(policy_streams={"nope": (0,)})


# -- end to end ------------------------------------------------------------------------------------------------------
def test_a_small_study_writes_json_and_tables_and_resumes_from_its_cache(tmp_path) -> None:
    design = StudyDesign(variants=("base",), policies=("uniform", "ab_grid"), seeds=(0,), streams=(0,), hours=2,
                         members_per_hour=200, policy_overrides=TINY, reference="uniform")
    out = tmp_path / "study"
    result = run_variant_study(design, out, progress=False)
    assert result["failures"] == []
    files = sorted(p.relative_to(out).as_posix() for p in (out / "runs").rglob("*.json"))
    assert files == ["runs/base/ab_grid-seed0-stream0.json", "runs/base/uniform-seed0-stream0.json"]
    doc = json.loads(result["study"].read_text())
    rows = {r["policy"]: r for r in doc["variants"]["base"]["rows"]}
    assert rows["uniform"]["runs"] == rows["ab_grid"]["runs"] == 1
    assert rows["ab_grid"]["vs_reference"]["unit"] == "run" and rows["ab_grid"]["vs_reference"]["n"] == 1
    assert [g["variant"] for g in doc["goals"]] == ["base"] * 4
    md = result["table_md"].read_text()
    assert "### variant `base`" in md and "| ab_grid (fixed A/B grid) |" in md and "## Goals" in md
    assert (out / "study-base.png").stat().st_size > 0
    run = json.loads(run_path(out, "uniform", 0, 0, "base").read_text())
    assert run["config"]["variant"] == "base" and run["summary"]["policy_seed"] == 0
    # a rerun finds every run in the cache and runs nothing
    stamp = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")}
    again = run_variant_study(design, out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")} == stamp
    assert json.loads(again["study"].read_text())["variants"]["base"]["rows"] == doc["variants"]["base"]["rows"]
    # a run file made with another config is refused, not mixed in
    other = StudyDesign(variants=("base",), policies=("uniform",), seeds=(0,), streams=(0,), hours=3,
                        members_per_hour=200, policy_overrides=TINY, reference="uniform")
    with pytest.raises(StudyMismatchError, match="hours: 2 there, 3 now"):
        run_variant_study(other, out, progress=False)
    # a run stored before a config field existed still matches while the field keeps its default
    path = run_path(out, "uniform", 0, 0, "base")
    stored = json.loads(path.read_text())
    del stored["config"]["simulator_points"]
    path.write_text(json.dumps(stored))
    assert run_variant_study(design, out, progress=False)["failures"] == []
    stored["config"]["simulator_points"] = 7  # a stored value that differs is still refused
    path.write_text(json.dumps(stored))
    with pytest.raises(StudyMismatchError, match="simulator_points: 7 there, 500 now"):
        run_variant_study(design, out, progress=False)


def test_the_study_flag_of_simulate(tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    code = cli_main(["simulate", "--study", "--policy", "gp,uniform", "--seeds", "1", "--streams", "2",
                     "--baseline-streams", "1", "--hours", "2", "--members-per-hour", "200", "--num-draws", "64",
                     "--num-candidates", "64", "--max-arms", "6", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "### variant `base`" in printed and "paired on world seeds" in printed
    assert sorted(p.name for p in (out / "runs" / "base").glob("*.json")) == [
        "gp-seed0-stream0.json", "gp-seed0-stream1.json", "uniform-seed0-stream0.json"]
    doc = json.loads((out / "study.json").read_text())
    assert doc["design"]["streams"] == [0, 1] and doc["design"]["baseline_streams"] == [0]
    gp = doc["variants"]["base"]["rows"][0]
    assert gp["policy"] == "gp" and gp["runs"] == 2 and gp["stream_sd"] is not None
    assert cli_main(["simulate", "--variant", "base,d4", "--out", str(out)]) == 2
    assert "need --study" in capsys.readouterr().err


def test_simulate_runs_a_variant_and_plots_its_single_run(tmp_path, capsys) -> None:
    out = tmp_path / "one"
    code = cli_main(["simulate", "--variant", "scarce", "--policy", "uniform", "--hours", "2", "--members-per-hour",
                     "200", "--max-arms", "6", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    run = out / "runs" / "scarce" / "uniform-seed0-stream0"
    assert json.loads(run.with_suffix(".json").read_text())["config"]["variant"] == "scarce"
    assert (run / "summary.json").exists() and (run / "traffic.png").stat().st_size > 0
    assert cli_main(["simulate", "--variant", "d4", "--num-parameters", "2", "--out", str(out)]) == 2
    assert "variant d4 has 4 parameters" in capsys.readouterr().err


_ORPHAN_SCRIPT = """
import multiprocessing as mp, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from simulations.study import _worker_init
if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(1, os.getpid()))
    print(pool.submit(os.getpid).result(), flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left unreaped by the container's init counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_a_pool_worker_exits_when_the_study_that_started_it_is_killed(tmp_path) -> None:
    """SIGKILL the study process: its worker notices within a few polls and exits instead of running on and
    writing run files that a later study in the same folder would load as finished."""
    script = tmp_path / "study_parent.py"
    script.write_text(_ORPHAN_SCRIPT)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=root, env=env)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10 * PARENT_POLL_S + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker)
    finally:
        parent.kill()
