"""The fixed lattice every arm lies on, so arms recur across hours and observations pool per arm.

Parameters map to the unit cube (log-scaled ones in log space); each unit axis has ``policy.grid_levels`` evenly
spaced levels (fewer for an int parameter with a small range). An arm's id is its lattice coordinates,
``g<i_1>-<i_2>-...``, so the same point always gets the same id. Light module: numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from bayesopt.spec import ExperimentSpec, Parameter

GRID_PREFIX = "g"
#: Points compared at once by :func:`within_steps` (bounds its memory at ``N x NEAR_BLOCK x d``).
NEAR_BLOCK = 256


def levels(p: Parameter, grid_levels: int) -> int:
    """Number of lattice levels on ``p``'s axis."""
    if p.type == "int" and not p.log_scale:
        return int(min(grid_levels, p.upper - p.lower + 1))
    return grid_levels


def to_unit(spec: ExperimentSpec, values: Mapping[str, float]) -> np.ndarray:
    """Parameter values to unit-cube coordinates, shape ``d``."""
    out = np.empty(len(spec.parameters))
    for j, p in enumerate(spec.parameters):
        v = float(values[p.name])
        if p.log_scale:
            out[j] = (math.log(v) - math.log(p.lower)) / (math.log(p.upper) - math.log(p.lower))
        else:
            out[j] = (v - p.lower) / (p.upper - p.lower)
    return np.clip(out, 0.0, 1.0)


def from_unit(spec: ExperimentSpec, u: Sequence[float]) -> dict[str, float]:
    """Unit-cube coordinates (shape ``d``) to parameter values, clipped to bounds, ints rounded."""
    values = {}
    for j, p in enumerate(spec.parameters):
        uj = min(max(float(u[j]), 0.0), 1.0)
        if p.log_scale:
            v = math.exp(math.log(p.lower) + uj * (math.log(p.upper) - math.log(p.lower)))
        else:
            v = p.lower + uj * (p.upper - p.lower)
        if p.type == "int":
            v = float(round(v))
        values[p.name] = min(max(v, p.lower), p.upper)
    return values


def snap(spec: ExperimentSpec, u: np.ndarray) -> np.ndarray:
    """Nearest lattice indices for unit points: ``n x d`` (or ``d``) floats to the same shape of ints."""
    sizes = np.array([levels(p, spec.policy.grid_levels) for p in spec.parameters])
    return np.rint(np.clip(u, 0.0, 1.0) * (sizes - 1)).astype(np.int64)


def within_steps(grid: np.ndarray, points: np.ndarray, steps: int) -> np.ndarray:
    """Which lattice points ``grid`` (``N x d`` indices) lie within ``steps`` lattice steps on every axis
    (Chebyshev distance) of at least one of ``points`` (``n x d`` indices): ``N`` bools."""
    grid = np.asarray(grid, dtype=np.int64)
    points = np.unique(np.asarray(points, dtype=np.int64).reshape(-1, grid.shape[-1]), axis=0)
    near = np.zeros(len(grid), dtype=bool)
    for start in range(0, len(points), NEAR_BLOCK):  # N x block x d at a time
        block = points[start:start + NEAR_BLOCK]
        near |= (np.abs(grid[:, None, :] - block[None, :, :]).max(axis=-1) <= steps).any(axis=-1)
    return near


def indices_to_unit(spec: ExperimentSpec, idx: np.ndarray) -> np.ndarray:
    """Lattice indices (``n x d`` or ``d``) to unit coordinates."""
    sizes = np.array([levels(p, spec.policy.grid_levels) for p in spec.parameters])
    return idx / (sizes - 1)


def arm_id(idx: Sequence[int]) -> str:
    """The stable id of the lattice point ``idx`` (shape ``d``)."""
    return GRID_PREFIX + "-".join(str(int(i)) for i in idx)


def parse_arm_id(spec: ExperimentSpec, arm: str) -> np.ndarray | None:
    """Lattice indices of a grid arm id, or None for other ids (such as ``control``)."""
    if not arm.startswith(GRID_PREFIX):
        return None
    try:
        idx = np.array([int(x) for x in arm[len(GRID_PREFIX):].split("-")], dtype=np.int64)
    except ValueError:
        return None
    return idx if idx.shape == (len(spec.parameters),) else None


def lattice_arm(spec: ExperimentSpec, u: Sequence[float]) -> tuple[str, dict[str, float]]:
    """Snap a unit point to the lattice; return its arm id and parameter values."""
    idx = snap(spec, np.asarray(u, dtype=float))
    return arm_id(idx), from_unit(spec, indices_to_unit(spec, idx))
