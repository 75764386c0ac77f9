"""Two baselines without a model: fresh uniform exploration every hour, and a fixed A/B grid."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bayesopt.distribution import ParameterDistribution
from bayesopt.proposal import Proposal
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
        previous: ParameterDistribution | None = None,
        seed: int = 0,
        warm_start: Mapping[str, Any] | None = None,
        now: float = 0.0,
    ) -> Proposal:
        k = spec.policy.max_arms - 1
        unit = policy_rng(seed).random((DRAWS_PER_ARM * k, len(spec.parameters)))
        arms = snap_points(spec, unit)[:k]
        return serve(spec, arms, diagnostics={"kind": self.name})


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
        previous: ParameterDistribution | None = None,
        seed: int = 0,
        warm_start: Mapping[str, Any] | None = None,
        now: float = 0.0,
    ) -> Proposal:
        return serve(spec, self.grid(spec), diagnostics={"kind": self.name})
