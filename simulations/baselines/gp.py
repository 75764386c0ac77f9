"""Adapter from the production policy (``bayesopt.policy.propose``) to :class:`ProposalPolicy`.

``method='constrained_ts'`` is our GP policy; ``method='utility_ts'`` is the LinkedIn-style utility, the same
function with ``spec.policy.method`` switched. The adapter keeps the returned ``Proposal.model_state`` and passes
it back as ``warm_start`` next hour, as the refit job does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bayesopt.distribution import ParameterDistribution
from bayesopt.spec import ExperimentSpec

METHODS = ("constrained_ts", "utility_ts")


@dataclass
class GPPolicy:
    """Calls ``bayesopt.policy.propose`` (imported on first use: it loads torch) with ``spec.policy.method`` set."""

    method: str = "constrained_ts"
    name: str = ""
    _warm_start: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not self.name:
            self.name = "gp" if self.method == "constrained_ts" else "utility"

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
        from bayesopt.policy import propose

        if spec.policy.method != self.method:
            spec = dataclasses.replace(spec, policy=dataclasses.replace(spec.policy, method=self.method))
        proposal = propose(
            spec, table, version=version, previous=previous, seed=seed, warm_start=self._warm_start, now=now
        )
        # The fitted hyperparameters come back as ``model_state``; they are next hour's ``warm_start``.
        self._warm_start = getattr(proposal, "model_state", None)
        return proposal.distribution
