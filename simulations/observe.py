"""Observation statistics of one served window, as the analytics pipeline would report them.

Building blocks for closed-loop runs and tests: :func:`simulate_window` samples sessions, :func:`expected_window`
writes noise-free statistics, and :func:`window_table` joins windows into the model table that policies read.
Rows have the columns of :data:`bayesopt.observations.STAT_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from bayesopt.distribution import ParameterDistribution
from bayesopt.observation_table import empty_stats, observation_table
from bayesopt.observations import STAT_COLUMNS
from bayesopt.spec import ExperimentSpec
from simulations.world import RankingWorld


def simulate_window(
    world: RankingWorld,
    distribution: ParameterDistribution,
    *,
    hour: float,
    sessions: int,
    rng: np.random.Generator,
    source: str = "online",
) -> pd.DataFrame:
    """Split ``sessions`` over the arms by weight (multinomial), sample outcomes, return one row per arm and metric."""
    counts = rng.multinomial(sessions, np.array(distribution.weights) / sum(distribution.weights))
    rows = []
    for arm, n in zip(distribution.arms, counts, strict=True):
        if n == 0:
            continue
        outcomes = world.sample_sessions(world.points(arm.values), int(n), hour, rng)
        for metric, y in outcomes.items():
            rows.append((distribution.version, arm.arm_id, metric, source, float(n), float(y.sum()), float(y @ y)))
    return pd.DataFrame(rows, columns=list(STAT_COLUMNS)) if rows else empty_stats()


def expected_window(
    world: RankingWorld, distribution: ParameterDistribution, *, hour: float, sessions: int, source: str = "online"
) -> pd.DataFrame:
    """Noise-free statistics: every arm gets its share of ``sessions`` and its true mean.

    ``sum_sq`` is that of 0/1 outcomes for rate metrics and of Poisson counts for count metrics, so standard
    errors are realistic while means are exact.
    """
    X = world.points([a.values for a in distribution.arms])
    M = world.expected_metrics(X, hour)  # k x m
    rows = []
    for arm, w, means in zip(distribution.arms, distribution.weights, M, strict=True):
        n = float(sessions) * w
        if n <= 0:
            continue
        for metric, mu in zip(world.metric_names, means, strict=True):
            second = mu if world.metric_kinds[metric] == "rate" else mu + mu * mu
            rows.append((distribution.version, arm.arm_id, metric, source, n, n * mu, n * second))
    return pd.DataFrame(rows, columns=list(STAT_COLUMNS)) if rows else empty_stats()


def window_table(
    spec: ExperimentSpec, windows: Iterable[tuple[ParameterDistribution, pd.DataFrame]]
) -> pd.DataFrame:
    """The model table (:func:`bayesopt.observation_table.observation_table`) of windows given as ``(served, stats)`` pairs."""
    values: dict[str, Mapping[str, float]] = {}
    frames = []
    for distribution, stats in windows:
        values.update({a.arm_id: dict(a.values) for a in distribution.arms})
        frames.append(stats)
    stats = pd.concat(frames, ignore_index=True) if frames else empty_stats()
    return observation_table(spec, stats, values)
