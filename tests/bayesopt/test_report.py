"""The impact report on a closed loop with hourly weights and a daily swing: stratified intervals cover the truth
at their stated confidence, pooled totals do not, and a broken assignment trips the sample-ratio check."""

from __future__ import annotations

import math

import pytest

from bayesopt.report import impact_report, pooled_mix_lift
from bayesopt.report_stats import chi2_sf
from tests.report_world import HOURS, SPEC, run_loop

SEEDS = range(200)
CONFIDENCE = 0.95
#: Coverage over 200 seeds of a 95% interval is binomial: three standard errors below 0.95 is 0.904.
COVERAGE_FLOOR = CONFIDENCE - 3 * math.sqrt(CONFIDENCE * (1 - CONFIDENCE) / len(SEEDS))


@pytest.fixture(scope="module")
def runs():
    return [run_loop(seed) for seed in SEEDS]


def test_the_stratified_lift_covers_the_served_mix_where_pooled_totals_do_not(runs) -> None:
    covered = relative_covered = pooled_covered = 0
    for run in runs:
        doc = impact_report(SPEC, run.activations, run.stats, confidence=CONFIDENCE)
        mix = doc["combined"]["mix"]["conversion"]
        covered += mix["lift"]["lower"] <= run.true_lift <= mix["lift"]["upper"]
        rel, true_rel = mix["relative_lift"], run.true_lift / run.true_control
        relative_covered += rel["lower"] <= true_rel <= rel["upper"]
        pooled_covered += pooled_mix_lift(run.stats, "conversion", confidence=CONFIDENCE).covers(run.true_lift)
    n = len(runs)
    assert covered / n >= COVERAGE_FLOOR, covered / n
    assert relative_covered / n >= COVERAGE_FLOOR, relative_covered / n
    assert pooled_covered / n < 0.5, pooled_covered / n  # control's totals over-weight the low-base night hours


def test_the_report_names_every_window_and_adds_up_the_gain(runs) -> None:
    run = runs[0]
    doc = impact_report(SPEC, run.activations, run.stats)
    assert [w["version"] for w in doc["windows"]] == list(range(1, HOURS + 1))
    gain = doc["cumulative_gain"]["conversion"]
    per_window = sum(w["members"] * w["mix"]["conversion"]["lift"]["value"] for w in doc["windows"])
    assert gain["value"] == pytest.approx(per_window)
    assert gain["by_window"][-1]["value"] == pytest.approx(gain["value"])
    assert set(doc["combined"]["arms"]) == {"a1", "a2", "a3"}
    a2 = doc["combined"]["arms"]["a2"]["metrics"]["conversion"]["lift"]
    assert a2["lower"] <= 0.008 <= a2["upper"]
    assert doc["guardrails"][0]["status"] == "ok" and doc["guardrails"][0]["margin"] > 0
    assert doc["sample_ratio"]["ok"]


def test_a_sound_assignment_rarely_raises_the_sample_ratio_alarm(runs) -> None:
    alarms = sum(not impact_report(SPEC, r.activations, r.stats)["sample_ratio"]["ok"] for r in runs)
    # 24 windows tested at 0.001 each, plus the day's total: at most about 2.5% of sound days alarm
    expected = 1 - (1 - 1e-3) ** (HOURS + 1)
    assert alarms / len(runs) <= expected + 3 * math.sqrt(expected * (1 - expected) / len(runs))


def test_a_broken_assignment_trips_the_sample_ratio_check() -> None:
    broken = run_loop(7, drop_share={"a1": 0.03, "a2": 0.03, "a3": 0.03})  # 3% of treated members never get logged
    srm = impact_report(SPEC, broken.activations, broken.stats)["sample_ratio"]
    assert not srm["ok"] and srm["p_value"] < srm["alpha"]


def test_the_chi_square_tail_matches_known_values() -> None:
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(18.307038053275146, 10) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(0.0, 3) == 1.0 and chi2_sf(400.0, 3) < 1e-80
