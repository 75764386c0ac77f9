"""Shared factories for the modelling tests: specs and simulated observation tables with known truths.

A *world* maps unit-cube points to each metric's true level; every window adds a common time effect to every
arm's level (hour-of-day swings), and per-arm noise is drawn from the metric's outcome distribution. Tables are
built through the real path, ``bayesopt.observation_table.observation_table``, from sufficient statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from bayesopt.distribution import CONTROL_ARM_ID
from bayesopt.lattice import lattice_arm, to_unit
from bayesopt.observation_table import observation_table
from bayesopt.spec import ExperimentSpec

Truth = Callable[[np.ndarray], np.ndarray]  # n x d unit points -> n levels


def make_spec(
    d: int = 2,
    *,
    metrics: Sequence[tuple[str, str]] = (("obj", "mean"), ("guard", "mean")),
    objectives: Sequence[dict] = ({"metric": "obj"},),
    guardrails: Sequence[dict] = ({"metric": "guard", "lower": 0.0},),
    control: float = 0.5,
    **policy,
) -> ExperimentSpec:
    """A spec with ``d`` parameters ``x0..x{d-1}`` in [0, 1] (control at ``control``) and small test budgets."""
    knobs = {"num_draws": 1000, "num_candidates": 256, "max_arms": 12, "grid_levels": 33, **policy}
    knobs.setdefault("initial_arms", min(8, knobs["max_arms"] - 1))
    return ExperimentSpec.from_dict(
        {
            "name": "test_exp",
            "parameters": [{"name": f"x{j}", "lower": 0.0, "upper": 1.0} for j in range(d)],
            "control": {f"x{j}": control for j in range(d)},
            "metrics": [{"name": n, "kind": k} for n, k in metrics],
            "objectives": list(objectives),
            "guardrails": list(guardrails),
            "traffic": {"control_share": 0.2},
            "policy": knobs,
        }
    )


def lattice_arms(spec: ExperimentSpec, units: np.ndarray) -> dict[str, dict[str, float]]:
    """Arm id -> values for unit points snapped to the lattice (duplicates merged), control included."""
    arms = {CONTROL_ARM_ID: dict(spec.control)}
    for u in units:
        arm, values = lattice_arm(spec, u)
        arms.setdefault(arm, values)
    return arms


def simulate(
    spec: ExperimentSpec,
    truths: Mapping[str, Truth],
    arms: Mapping[str, Mapping[str, float]],
    *,
    windows: int,
    count: int,
    noise_sd: Mapping[str, float] | None = None,
    time_effect: float = 0.0,
    arms_per_window: int | None = None,
    schedule: Mapping[int, Sequence[str]] | None = None,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """An observation table of ``windows`` windows.

    Each window serves control plus ``arms_per_window`` arms (all by default), each to ``count`` members.
    ``mean`` metrics: outcomes ~ N(level, noise_sd^2); ``rate`` metrics: Bernoulli(level). Every arm's level in
    window ``w`` is shifted by the same ``time_effect * sin(2 pi w / 24)`` (hour-of-day). ``schedule`` (window ->
    arm ids) overrides which arms serve.
    """
    kinds = {m.name: m.kind for m in spec.metrics}
    noise_sd = noise_sd or {}
    others = [a for a in arms if a != CONTROL_ARM_ID]
    rows = []
    for w in range(1, windows + 1):
        if schedule is not None:
            served = list(schedule.get(w, ()))
        elif arms_per_window is None:
            served = others
        else:
            served = list(rng.choice(others, size=min(arms_per_window, len(others)), replace=False))
        offset = time_effect * np.sin(2 * np.pi * w / 24)
        for arm in [CONTROL_ARM_ID, *sorted(served)]:
            u = to_unit(spec, arms[arm])[None, :]
            for metric, truth in truths.items():
                level = float(truth(u)[0]) + offset
                rows.append(_stat(w, arm, metric, kinds[metric], level, count, noise_sd.get(metric, 1.0), rng))
    stats = pd.DataFrame(rows, columns=["version", "arm_id", "metric", "source", "count", "sum", "sum_sq"])
    return observation_table(spec, stats, arms)


def _stat(w: int, arm: str, metric: str, kind: str, level: float, count: int, sd: float, rng: np.random.Generator) -> tuple:
    if kind == "rate":
        successes = float(rng.binomial(count, min(max(level, 0.0), 1.0)))
        return (w, arm, metric, "online", float(count), successes, successes)
    outcomes = rng.normal(level, sd, size=count)
    return (w, arm, metric, "online", float(count), float(outcomes.sum()), float((outcomes**2).sum()))


def non_control(distribution) -> list:
    """The distribution's arms other than control."""
    return [a for a in distribution.arms if a.arm_id != CONTROL_ARM_ID]


def unit_of(spec: ExperimentSpec, arm) -> np.ndarray:
    """An arm's unit-cube point."""
    return to_unit(spec, arm.values)
