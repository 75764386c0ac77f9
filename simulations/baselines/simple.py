"""Two baselines without a model: fresh uniform exploration every hour, and a fixed A/B grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bayesopt.distribution import ParameterDistribution
from bayesopt.spec import ExperimentSpec
from simulations.baselines.common import ArmPoint, fixed_arm_set, policy_rng, serve, snap_points

#: Uniform draws per served arm: extra draws make up for points that snap onto the same lattice arm.
DRAWS_PER_ARM = 4


@dataclass
class UniformPolicy:
    """Every hour, ``max_arms - 1`` lattice arms drawn uniformly at random, equal weights; ignores the data."""

    name: str = "uniform"

    def propose(
        self,
        spec: ExperimentSpec,
        table: pd.DataFrame,
        *,
        version: int,
        previous: ParameterDistribution | None,
        seed: int,
        now: float,
    ) -> ParameterDistribution:
        k = spec.policy.max_arms - 1
        unit = policy_rng(seed, version).random((DRAWS_PER_ARM * k, len(spec.parameters)))
        arms = snap_points(spec, unit)[:k]
        return serve(spec, arms, version=version, now=now, diagnostics={"kind": self.name})


@dataclass
class ABGridPolicy:
    """A classic A/B test: a fixed grid of lattice arms chosen at the first call, equal split, every hour.

    The grid is :func:`~simulations.baselines.common.fixed_arm_set` with ``max_arms - 1`` arms (a full
    factorial when it fits, Sobol points otherwise), seeded by ``spec.policy.seed``.
    """

    name: str = "ab_grid"
    _grids: dict[str, list[ArmPoint]] = field(default_factory=dict, repr=False)

    def grid(self, spec: ExperimentSpec) -> list[ArmPoint]:
        """The arms this policy serves for ``spec`` (fixed once chosen)."""
        if spec.spec_hash not in self._grids:
            self._grids[spec.spec_hash] = fixed_arm_set(spec, spec.policy.max_arms - 1, seed=spec.policy.seed)
        return self._grids[spec.spec_hash]

    def propose(
        self,
        spec: ExperimentSpec,
        table: pd.DataFrame,
        *,
        version: int,
        previous: ParameterDistribution | None,
        seed: int,
        now: float,
    ) -> ParameterDistribution:
        return serve(spec, self.grid(spec), version=version, now=now, diagnostics={"kind": self.name})
