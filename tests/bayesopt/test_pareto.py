"""The Pareto analysis on a problem whose frontier is known: two smooth metrics that trade off along x1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution
from bayesopt.observation_table import observation_table
from bayesopt.pareto import frontier_curve, nondominated, pareto_analysis
from bayesopt.spec import ExperimentSpec

SPEC = ExperimentSpec.from_dict({
    "name": "known",
    "parameters": [{"name": "x1", "lower": 0.0, "upper": 1.0}, {"name": "x2", "lower": 0.0, "upper": 1.0}],
    "control": {"x1": 0.5, "x2": 0.5},
    "metrics": [{"name": "gain"}, {"name": "safety"}],
    "objectives": [{"metric": "gain"}],
    "guardrails": [{"metric": "safety", "lower": -0.03, "relative": True}],
})
#: Per-outcome standard deviation and outcomes per arm and window: the standard error of an arm's relative lift
#: in one window is about sqrt(2) * 1 / sqrt(4000) / 10 = 0.22% for gain.
NOISE_SD, COUNT, WINDOWS = 1.0, 4000, 3
#: The stated tolerance: every point of the true frontier lies within 1 percentage point (Euclidean, in the
#: plane of gain lift and safety change) of the predicted frontier and vice versa (a Hausdorff distance), on
#: average over the worlds of :data:`SEEDS`, and within 2 points in each; the frontier spans about 7 points of
#: gain and 10 of safety. (Comparing best gain at each safety level instead magnifies small errors where the
#: frontier is steep.) The error is largest at the frontier's far end, where the predicted frontier runs a
#: little past the true one, and it moves with each window's control error, which every arm shares. Measured
#: over seeds 3-10: mean 0.006, worst 0.012 (seed 6).
TOLERANCE = 0.01
WORST_TOLERANCE = 0.02
SEEDS = (3, 4, 5, 6, 7, 8, 9, 10)
#: Window ``w`` adds ``HOUR_EFFECT * w`` to every arm; relative lifts are against control's level averaged over
#: the windows, which includes the mean hour effect.
HOUR_EFFECT = 0.4
MEAN_HOUR_EFFECT = HOUR_EFFECT * (WINDOWS + 1) / 2


def truth(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gain = 10.0 * (1 + 0.08 * x1 + 0.02 * np.sin(3 * x2))
    safety = 5.0 * (1 - 0.10 * x1**2 + 0.02 * x2)
    return gain, safety


def hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """The Hausdorff distance between two point sets (``n x 2`` and ``m x 2``)."""
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    return float(max(d.min(axis=1).max(), d.min(axis=0).max()))


def observed_table(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    grid = [(i / 5, j / 5) for i in range(6) for j in range(6)]
    arm_values = {CONTROL_ARM_ID: dict(SPEC.control)} | {f"a{i}{j}": {"x1": x1, "x2": x2} for i, j, (x1, x2) in
                                                           ((k // 6, k % 6, p) for k, p in enumerate(grid))}
    rows = []
    for window in range(1, WINDOWS + 1):
        hour_effect = HOUR_EFFECT * window  # every arm rides the same swing
        for arm, v in arm_values.items():
            means = truth(np.array(v["x1"]), np.array(v["x2"]))
            for metric, mu in zip(("gain", "safety"), means, strict=True):
                mean = float(mu) + hour_effect + rng.normal(0, NOISE_SD / np.sqrt(COUNT))
                rows.append({"version": window, "arm_id": arm, "metric": metric, "source": "online", "count": COUNT,
                             "sum": COUNT * mean, "sum_sq": (COUNT - 1) * NOISE_SD**2 + COUNT * mean**2})
    return observation_table(SPEC, pd.DataFrame(rows), arm_values)


def test_nondominated_keeps_exactly_the_points_nothing_beats() -> None:
    a, b = np.array([1.0, 2.0, 3.0, 2.0, 0.5]), np.array([3.0, 2.0, 1.0, 1.0, 0.5])
    assert nondominated(a, b).tolist() == [True, True, True, False, False]


def test_the_predicted_frontier_lies_within_tolerance_of_the_true_one(one_torch_thread) -> None:
    distances = [check_frontier(seed) for seed in SEEDS]
    assert np.mean(distances) <= TOLERANCE and max(distances) <= WORST_TOLERANCE, distances


def check_frontier(seed: int) -> float:
    """One world's checks; returns the Hausdorff distance between the true and the predicted frontier."""
    current = ParameterDistribution(
        experiment="known", version=4, spec_hash=SPEC.spec_hash, control_share=0.2,
        arms=(Arm(CONTROL_ARM_ID, SPEC.control, 0.4), Arm("a50", {"x1": 1.0, "x2": 0.0}, 0.6)))
    analysis = pareto_analysis(SPEC, observed_table(seed), current=current, num_points=256)
    points = analysis.points
    gain, safety = truth(points["x.x1"].to_numpy(), points["x.x2"].to_numpy())
    g0, s0 = truth(np.array(0.5), np.array(0.5))
    true_gain, true_safety = (gain - g0) / (g0 + MEAN_HOUR_EFFECT), (safety - s0) / (s0 + MEAN_HOUR_EFFECT)
    keep = nondominated(true_gain, true_safety)
    frontier = analysis.frontier("gain", "safety")
    levels = np.linspace(np.min(true_safety[keep]), np.max(true_safety[keep]), 25)
    predicted_curve = frontier_curve(frontier.predicted["gain"], frontier.predicted["safety"], levels)
    assert np.mean(~np.isnan(predicted_curve)) >= 0.9, "the predicted frontier spans the true one's range of safety"
    true_points = np.column_stack([true_gain[keep], true_safety[keep]])
    predicted_points = frontier.predicted[["gain", "safety"]].to_numpy()
    distance = hausdorff(true_points, predicted_points)
    # the feasible region is where safety is predicted above -3%; truth agrees on most points
    truly_feasible = true_safety >= -0.03
    assert (points["feasible"].to_numpy() == truly_feasible).mean() >= 0.9
    # the current mass and the guardrail's distance from its limit
    assert analysis.current.set_index("arm_id")["weight"].to_dict() == {CONTROL_ARM_ID: 0.4, "a50": 0.6}
    (margin,) = analysis.guardrails
    true_mix = 0.6 * (truth(np.array(1.0), np.array(0.0))[1] - s0) / (s0 + MEAN_HOUR_EFFECT)
    assert margin["mix"] == pytest.approx(true_mix, abs=TOLERANCE)
    assert margin["margin"] == pytest.approx(margin["mix"] + 0.03)
    # every observed frontier arm carries its interval
    observed = frontier.observed
    assert len(observed) >= 3 and (observed["gain_lower"] <= observed["gain"]).all()
    return distance
