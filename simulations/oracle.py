"""The world's ground truth seen through a spec: feasibility, the best feasible lattice arm, regret.

The spec's first objective is the one optimised; guardrails are checked on true daily-level metrics (the
time-of-day factor multiplies every arm alike, so neither feasibility nor the optimum depends on the hour of
day). A world may change at a given hour (a ranker release, see ``WorldConfig.shift_hour``): each
:class:`Truth` belongs to one *regime* of the world, the one in force before or after the change, and
:meth:`simulations.world.RankingWorld.truth` picks the regime of an hour.
The search runs over the spec's lattice, the only points a policy can serve: exhaustively when the lattice is
small, otherwise from Sobol starts (seeded by the *world's* seed, never the policy's, so every sampler stream
of a world is judged against the same optimum) refined by a lattice pattern search.

This module does not import :mod:`simulations.world`: it sees a world through the small :class:`World`
protocol, and the world imports it (one direction, no import circle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.stats import qmc

from bayesopt.lattice import arm_id, from_unit, indices_to_unit, levels, snap, to_unit
from bayesopt.spec import ExperimentSpec


class World(Protocol):
    """What the oracle needs of a world (:class:`simulations.world.RankingWorld` is one)."""

    parameter_names: list[str]
    metric_names: list[str]

    @property
    def seed(self) -> int: ...

    def expected_metrics(self, X: Any, hour: float | None = None, *, regime: int | None = None) -> np.ndarray: ...

    def points(self, values: Any) -> np.ndarray: ...

    def tod_multiplier(self, hour: float | None) -> float: ...

#: Lattices up to this many points are searched exhaustively (about 2 ms a point on 2 cores).
EXHAUSTIVE_LIMIT = 4096
#: Sobol starting points for larger lattices, and how many of the best feasible ones are refined.
SEARCH_STARTS = 1024
REFINED_STARTS = 4


@dataclass(frozen=True)
class Optimum:
    """A lattice point with its true daily-level metrics.

    ``relative`` is each metric's relative change against control; ``objective`` is the first objective's
    daily-level value; ``feasible`` says whether every guardrail holds.
    """

    values: Mapping[str, float]
    arm_id: str
    metrics: Mapping[str, float]
    relative: Mapping[str, float]
    objective: float
    feasible: bool


class Truth:
    """True metrics of a world for one spec in one regime: feasibility and objective of any points, vectorised.

    Args:
        world: the world; its parameter names must equal the spec's.
        spec: the experiment.
        regime: the world's regime (0 before its shift, 1 after; a world without a shift has only 0).
    """

    def __init__(self, world: World, spec: ExperimentSpec, regime: int = 0) -> None:
        if sorted(world.parameter_names) != sorted(spec.parameter_names):
            raise ValueError(f"spec parameters {spec.parameter_names} differ from the world's {world.parameter_names}")
        missing = sorted(set(spec.metric_names) - set(world.metric_names))
        if missing:
            raise ValueError(f"spec metrics {missing} are not metrics of the world ({world.metric_names})")
        self.world, self.spec, self.regime = world, spec, int(regime)
        self.objective = spec.objectives[0]
        self.sign = 1.0 if self.objective.direction == "maximize" else -1.0
        self._col = {m: j for j, m in enumerate(world.metric_names)}
        self.control = world.expected_metrics(world.points(spec.control), regime=self.regime)[0]  # m
        self._grid_metrics: np.ndarray | None = None  # the whole lattice's metrics, once searched exhaustively

    def metrics(self, values: np.ndarray | Mapping[str, float], hour: float | None = None) -> np.ndarray:
        """True metrics in this regime, ``n x m`` (world metric order), for spec-ordered values ``n x d`` or one
        mapping; ``hour`` only sets the time-of-day factor."""
        return self.world.expected_metrics(self._world_points(values), hour, regime=self.regime)

    def _world_points(self, values: np.ndarray | Mapping[str, float]) -> np.ndarray:
        if isinstance(values, Mapping):
            return self.world.points(values)
        V = np.atleast_2d(np.asarray(values, dtype=float))  # n x d, spec order
        order = [self.spec.parameter_names.index(p) for p in self.world.parameter_names]
        return V[:, order]

    def relative(self, M: np.ndarray) -> np.ndarray:
        """Relative change against control of daily-level metrics ``M`` (``n x m``)."""
        return (M - self.control) / np.abs(self.control)

    def feasible(self, M: np.ndarray) -> np.ndarray:
        """Which rows of daily-level metrics ``M`` (``n x m``) meet every guardrail: ``n`` bools."""
        ok = np.ones(len(M), dtype=bool)
        rel = self.relative(M)
        for g in self.spec.guardrails:
            j = self._col[g.metric]
            value = rel[:, j] if g.relative else M[:, j]
            ok &= value >= g.bound - 1e-12 if g.is_lower else value <= g.bound + 1e-12
        return ok

    def objective_values(self, M: np.ndarray) -> np.ndarray:
        """The first objective's column of ``M``: ``n``."""
        return M[:, self._col[self.objective.metric]]

    def score(self, M: np.ndarray, *, constrained: bool) -> np.ndarray:
        """Objective in the maximise direction, ``-inf`` where infeasible when ``constrained``."""
        s = self.sign * self.objective_values(M)
        return np.where(self.feasible(M), s, -np.inf) if constrained else s

    def optimum_at(self, idx: np.ndarray) -> Optimum:
        """The :class:`Optimum` record of lattice indices ``idx`` (shape ``d``)."""
        values = from_unit(self.spec, indices_to_unit(self.spec, idx))
        M = self.metrics(values)
        rel = self.relative(M)[0]
        return Optimum(
            values=values,
            arm_id=arm_id(idx),
            metrics=dict(zip(self.world.metric_names, M[0].tolist(), strict=True)),
            relative=dict(zip(self.world.metric_names, rel.tolist(), strict=True)),
            objective=float(self.objective_values(M)[0]),
            feasible=bool(self.feasible(M)[0]),
        )

    # -- search ----------------------------------------------------------------------------------------------
    def search(self, *, constrained: bool = True) -> Optimum:
        """The best lattice point (feasible ones only when ``constrained``; control qualifies always)."""
        sizes = np.array([levels(p, self.spec.policy.grid_levels) for p in self.spec.parameters])
        if np.prod(sizes.astype(float)) <= EXHAUSTIVE_LIMIT:
            grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(-1, len(sizes))
            if self._grid_metrics is None:
                self._grid_metrics = self.metrics(self._values(grid))
            scores = self.score(self._grid_metrics, constrained=constrained)
            return self.optimum_at(grid[int(np.argmax(scores))])
        unit = qmc.Sobol(len(sizes), scramble=True, seed=int(self.world.seed)).random(SEARCH_STARTS)
        starts = np.unique(np.vstack([snap(self.spec, unit), snap(self.spec, to_unit(self.spec, self.spec.control))]), axis=0)
        scores = self._scores(starts, constrained)
        best_idx, best = starts[int(np.argmax(scores))], float(np.max(scores))
        for i in np.argsort(-scores)[:REFINED_STARTS]:
            idx, score = self._pattern_search(starts[i], float(scores[i]), sizes, constrained)
            if score > best:
                best_idx, best = idx, score
        return self.optimum_at(best_idx)

    def _values(self, idx: np.ndarray) -> np.ndarray:
        """Spec-ordered parameter values (``n x d``) of lattice indices ``idx`` (``n x d``)."""
        return np.array([list(from_unit(self.spec, u).values()) for u in indices_to_unit(self.spec, idx)])

    def _scores(self, idx: np.ndarray, constrained: bool) -> np.ndarray:
        return self.score(self.metrics(self._values(idx)), constrained=constrained)

    def _pattern_search(
        self, idx: np.ndarray, score: float, sizes: np.ndarray, constrained: bool
    ) -> tuple[np.ndarray, float]:
        """Greedy moves along one axis at a time, halving the step when none improves."""
        step = max(1, int(sizes.max()) // 8)
        d = len(sizes)
        while step >= 1:
            moves = np.vstack([np.eye(d, dtype=np.int64) * step, -np.eye(d, dtype=np.int64) * step])  # 2d x d
            cand = np.unique(np.clip(idx + moves, 0, sizes - 1), axis=0)
            scores = self._scores(cand, constrained)
            if scores.max() > score + 1e-15:
                idx, score = cand[int(np.argmax(scores))], float(scores.max())
            else:
                step //= 2
        return idx, score


def best_feasible(world: World, spec: ExperimentSpec, regime: int = 0) -> Optimum:
    """The best lattice arm meeting every guardrail of ``spec`` by the world's true metrics (in ``regime``)."""
    return Truth(world, spec, regime).search(constrained=True)


def best_objective(world: World, spec: ExperimentSpec, regime: int = 0) -> Optimum:
    """The best lattice arm for the objective alone, guardrails ignored (in ``regime``)."""
    return Truth(world, spec, regime).search(constrained=False)


def instant_regret(
    truth: Truth, optimum: Optimum, values: np.ndarray, weights: np.ndarray, *, hour: float | None = None
) -> float:
    """Objective lost by serving ``weights`` (``k``) over spec-ordered ``values`` (``k x d``) at ``hour``.

    Measured in the objective's own units, positive when worse than the best feasible arm; it can be negative
    when traffic sits on infeasible arms that beat it.
    """
    served = float(np.dot(weights, truth.objective_values(truth.metrics(values, hour))))
    best = optimum.objective * truth.world.tod_multiplier(hour)
    return truth.sign * (best - served)
