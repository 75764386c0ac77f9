"""The candidate set Thompson sampling chooses from: ``N`` lattice points plus control.

Mixed from, in order of priority: the control arm (always index 0), arms already observed or served (so arms
recur across hours and their data count), lattice neighbours of the most promising arms (local refinement on
the lattice), and scrambled-Sobol points snapped to the lattice (exploration). With a *safe region* (boxes of
half-width ``radius`` around control and the arms the guardrail models deem safe) the Sobol points fill those
boxes only, so exploration widens from control as the models grow confident, SafeOpt-style, instead of
jumping to corners no data speaks for. When the whole lattice has at most ``N`` points and there is no safe
region, it is enumerated instead. Light module: numpy and scipy.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import qmc

from bayesopt.distribution import CONTROL_ARM_ID
from bayesopt.lattice import arm_id, from_unit, indices_to_unit, levels, parse_arm_id, snap, to_unit
from bayesopt.spec import ExperimentSpec

#: Share of ``N`` given to neighbours of the best arms (the rest after known arms is Sobol fill).
LOCAL_SHARE = 0.25
#: Neighbours are drawn from a box of this many lattice steps around each centre.
LOCAL_RADIUS = 2
#: Known arms (observed or previously served) take at most this share of ``N``.
KNOWN_SHARE = 0.5


@dataclass(frozen=True)
class Candidates:
    """``N`` candidate points: ``ids[0] == "control"``; ``X`` is ``N x d`` in unit coordinates."""

    ids: list[str]
    X: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def lattice_size(spec: ExperimentSpec) -> int:
    """Number of points of the spec's lattice."""
    return int(np.prod([levels(p, spec.policy.grid_levels) for p in spec.parameters], dtype=float))


def grid_index(spec: ExperimentSpec, arm: str, unit: np.ndarray | None) -> np.ndarray | None:
    """Lattice indices (``d``) of an arm, from its id when it is a lattice id, else by snapping its unit point."""
    idx = parse_arm_id(spec, arm)
    if idx is None and unit is not None:
        idx = snap(spec, np.asarray(unit, dtype=float))
    return idx


def served_unit(spec: ExperimentSpec, idx: np.ndarray) -> np.ndarray:
    """Unit point (``d``) of the values actually served at lattice indices ``idx`` (int parameters rounded)."""
    return to_unit(spec, from_unit(spec, indices_to_unit(spec, idx)))


class _Builder:
    """Collects unique lattice indices in priority order until ``size`` are held."""

    def __init__(self, spec: ExperimentSpec, size: int) -> None:
        self.spec, self.size = spec, size
        self.control_idx = tuple(snap(spec, to_unit(spec, spec.control)))
        self.control_on_lattice = np.allclose(indices_to_unit(spec, np.array(self.control_idx)), to_unit(spec, spec.control))
        self.ids: dict[str, np.ndarray] = {}

    def add(self, indices: Iterable[np.ndarray], limit: int | None = None) -> None:
        stop = self.size if limit is None else min(self.size, len(self.ids) + limit)
        for idx in indices:
            if len(self.ids) >= stop:
                return
            idx = np.asarray(idx, dtype=np.int64)
            if self.control_on_lattice and tuple(idx) == self.control_idx:
                continue  # that point is the control arm
            self.ids.setdefault(arm_id(idx), idx)


def build_candidates(
    spec: ExperimentSpec,
    num: int,
    *,
    known: Sequence[tuple[str, np.ndarray | None]] = (),
    centers: np.ndarray | None = None,
    safe_centers: np.ndarray | None = None,
    radius: float = 1.0,
    seed: int = 0,
) -> Candidates:
    """Up to ``num`` lattice candidates plus control (so ``N <= num + 1``).

    Args:
        spec: the experiment (lattice, control).
        num: the number of non-control candidates wanted (``policy.num_candidates``).
        known: ``(arm_id, unit point)`` of arms observed or served before, most important first.
        centers: ``c x d`` unit points around which to add lattice neighbours (the most promising arms).
        safe_centers: ``r x d`` unit points of the safe region's centres (None: the whole cube).
        radius: the half-width of each safe box, in unit coordinates.
        seed: seeds the Sobol fill and the neighbour draws.
    """
    rng = np.random.default_rng(seed)
    b = _Builder(spec, num)
    if safe_centers is None and lattice_size(spec) <= num:
        axes = [range(levels(p, spec.policy.grid_levels)) for p in spec.parameters]
        b.add(np.array(i) for i in itertools.product(*axes))
        return _finish(spec, b)
    b.add((i for a, v in known if (i := grid_index(spec, a, v)) is not None), limit=int(KNOWN_SHARE * num))
    if centers is not None and len(centers):
        b.add(_neighbours(spec, centers, int(LOCAL_SHARE * num), rng), limit=int(LOCAL_SHARE * num))
    sobol = qmc.Sobol(len(spec.parameters), scramble=True, seed=rng)
    while len(b.ids) < num:
        before = len(b.ids)
        u = sobol.random(1 << max(4, (num - before - 1).bit_length()))  # n x d
        if safe_centers is not None:
            boxes = np.atleast_2d(safe_centers)[np.arange(len(u)) % len(np.atleast_2d(safe_centers))]  # n x d
            u = np.clip(boxes + (2.0 * u - 1.0) * radius, 0.0, 1.0)
        b.add(snap(spec, u))
        if len(b.ids) == before:  # a coarse lattice (or a small safe region) can run out before `num`
            break
    return _finish(spec, b)


def _neighbours(spec: ExperimentSpec, centers: np.ndarray, count: int, rng: np.random.Generator) -> Iterable[np.ndarray]:
    """``count`` lattice points in the ``±LOCAL_RADIUS`` box around the centres, centres first, round-robin."""
    sizes = np.array([levels(p, spec.policy.grid_levels) for p in spec.parameters])
    base = snap(spec, np.atleast_2d(centers))  # c x d
    yield from base
    per = max(1, count // len(base))
    steps = rng.integers(-LOCAL_RADIUS, LOCAL_RADIUS + 1, size=(per, *base.shape))  # per x c x d
    for row in steps:
        yield from np.clip(base + row, 0, sizes - 1)


def _finish(spec: ExperimentSpec, b: _Builder) -> Candidates:
    ids = [CONTROL_ARM_ID, *b.ids]
    X = np.vstack([to_unit(spec, spec.control)[None, :]] + [served_unit(spec, i)[None, :] for i in b.ids.values()])
    return Candidates(ids, X)
