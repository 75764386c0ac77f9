"""A biased offline simulator of the synthetic ranking world: cheap, plentiful, and systematically wrong.

For each metric with true expected level ``t(x)`` (:meth:`RankingWorld.expected_metrics`, the daily mean), control
level ``c`` and spread ``sigma`` (the standard deviation of ``t`` over the parameter box), the simulator reports

    s(x) = c (1 + offset) + scale [rho (t(x) - c) + sqrt(1 - rho^2) sigma g(x)] + noise,   noise ~ N(0, (noise sigma)^2)

where ``g`` is a smooth random function (random Fourier features of a squared-exponential kernel with
``lengthscale`` on the unit cube, made uncorrelated with ``t`` and standardised over the box), fixed by the simulator's seed. So ``offset`` shifts
levels, ``scale`` stretches effects, ``rho`` is the correlation of the simulator's effects with the true ones
(1: a shifted and scaled copy; 0: useless, a smooth surface unrelated to the truth), and ``noise`` is per
point, relative to ``sigma``. Presets (:data:`SIMULATOR_PRESETS`): ``good``, ``biased`` (moderately: effects
1.6x, levels +15%, correlation 0.95) and ``useless`` (correlation 0).

:func:`simulator_rows` gives the rows ``param_store.ParamStore.add_simulator_observations`` takes (one run, one
row per point and metric, ``count``/``mean``/``std_error``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesopt.spec import ExperimentSpec
from simulations.world import RankingWorld

#: Points of the box used to measure each metric's spread ``sigma`` and to standardise ``g``.
SPREAD_POINTS = 256
#: Random Fourier features of the distortion ``g``.
NUM_FEATURES = 256
#: The ``count`` each simulator row claims (its ``std_error`` is what carries the noise).
ROW_COUNT = 1000


@dataclass(frozen=True)
class SimulatorConfig:
    """The knobs of a biased simulator; see the module docstring for the formula."""

    name: str
    rho: float = 1.0
    scale: float = 1.0
    offset: float = 0.0
    noise: float = 0.05
    lengthscale: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"rho must be in [0, 1], got {self.rho}")
        if not (self.noise >= 0 and self.lengthscale > 0):
            raise ValueError(f"noise must be >= 0 and lengthscale > 0, got {self.noise} and {self.lengthscale}")


SIMULATOR_PRESETS = {
    "good": SimulatorConfig("good", rho=0.99, scale=1.1, offset=0.03, noise=0.05),
    "biased": SimulatorConfig("biased", rho=0.95, scale=1.6, offset=0.15, noise=0.10),
    "useless": SimulatorConfig("useless", rho=0.0, scale=1.0, offset=0.05, noise=0.10),
}


def simulator_preset(name: str) -> SimulatorConfig:
    if name not in SIMULATOR_PRESETS:
        raise ValueError(f"unknown simulator {name!r} (choose from {', '.join(SIMULATOR_PRESETS)})")
    return SIMULATOR_PRESETS[name]


class OfflineSimulator:
    """A biased simulator of ``world`` under ``spec`` (its parameters, control and metrics)."""

    def __init__(self, world: RankingWorld, spec: ExperimentSpec, config: SimulatorConfig, *, seed: int = 0) -> None:
        self.world, self.spec, self.config = world, spec, config
        rng = np.random.default_rng([seed, 104_729])
        d, m = len(spec.parameter_names), len(world.metric_names)
        self._omega = rng.normal(0.0, 1.0 / config.lengthscale, size=(m, NUM_FEATURES, d))  # m x F x d
        self._phase = rng.uniform(0.0, 2 * math.pi, size=(m, NUM_FEATURES))
        self._weights = rng.normal(size=(m, NUM_FEATURES))
        box = rng.random((SPREAD_POINTS, d))
        truth = self._truth(box)  # P x m
        self.control = self._truth(self._unit(np.array([[spec.control[p] for p in spec.parameter_names]])))[0]  # m
        self.sigma = truth.std(axis=0)  # m
        # g is made uncorrelated with the truth over the box, so that rho alone sets the correlation
        raw = self._raw_distortion(box)  # P x m
        t_c, g_c = truth - truth.mean(axis=0), raw - raw.mean(axis=0)
        self._t_mean, self._g_mean = truth.mean(axis=0), raw.mean(axis=0)
        self._beta = (t_c * g_c).sum(axis=0) / np.maximum((t_c**2).sum(axis=0), 1e-300)  # m
        self._g_sd = np.maximum((g_c - self._beta * t_c).std(axis=0), 1e-300)
        self._truths: dict[bytes, np.ndarray] = {}

    def with_config(self, config: SimulatorConfig) -> OfflineSimulator:
        """The same world, spec and seed with other knobs (the truth already computed is reused)."""
        out = copy.copy(self)
        out.config = config
        return out

    def _unit(self, values: np.ndarray) -> np.ndarray:
        lo = np.array([p.lower for p in self.spec.parameters])
        hi = np.array([p.upper for p in self.spec.parameters])
        return (values - lo) / (hi - lo)

    def _truth(self, U: np.ndarray) -> np.ndarray:
        lo = np.array([p.lower for p in self.spec.parameters])
        hi = np.array([p.upper for p in self.spec.parameters])
        return self.world.expected_metrics(lo + U * (hi - lo))  # n x m

    def _raw_distortion(self, U: np.ndarray) -> np.ndarray:
        proj = np.einsum("nd,mfd->nmf", U, self._omega) + self._phase  # n x m x F
        return np.einsum("nmf,mf->nm", np.cos(proj), self._weights)  # n x m

    def levels(self, values: np.ndarray) -> np.ndarray:
        """Noise-free simulated levels ``n x m`` at ``n x d`` parameter values (spec order)."""
        U = self._unit(np.atleast_2d(values))
        key = U.tobytes()
        if key not in self._truths:  # the world's truth is the expensive part; copies share this cache
            self._truths.clear()
            self._truths[key] = self._truth(U)
        truth = self._truths[key]
        g = (self._raw_distortion(U) - self._g_mean - self._beta * (truth - self._t_mean)) / self._g_sd
        c = self.config
        effect = c.rho * (truth - self.control) + math.sqrt(1 - c.rho**2) * self.sigma * g
        return self.control * (1 + c.offset) + c.scale * effect

    def rows(self, num_points: int, *, run: str = "replay", seed: int = 0) -> list[dict[str, Any]]:
        """``num_points`` uniformly random settings, one row per point and metric (kept inside ``[0, 1]`` for rates)."""
        rng = np.random.default_rng([seed, 15_485_863])
        lo = np.array([p.lower for p in self.spec.parameters])
        hi = np.array([p.upper for p in self.spec.parameters])
        values = lo + rng.random((num_points, len(lo))) * (hi - lo)
        se = self.config.noise * np.maximum(self.sigma, 1e-12)  # m
        noisy = self.levels(values) + rng.normal(size=(num_points, len(se))) * se
        rates = np.array([self.world.metric_kinds[m] == "rate" for m in self.world.metric_names])
        noisy[:, rates] = np.clip(noisy[:, rates], 0.0, 1.0)
        out = []
        for i in range(num_points):
            params = {p: float(v) for p, v in zip(self.spec.parameter_names, values[i], strict=True)}
            for j, metric in enumerate(self.world.metric_names):
                out.append({"source": "simulation", "run": run, "parameters": params, "metric": metric,
                            "count": ROW_COUNT, "mean": float(noisy[i, j]), "std_error": float(se[j])})
        return out
