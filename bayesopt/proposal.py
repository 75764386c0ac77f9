"""The policy seam: what the refit hands a policy and what it gets back. Light: no torch, no model code.

The GP policy (:class:`bayesopt.policy.GPPolicy`) and every closed-loop baseline implement
:class:`RefitPolicy`; the refit job (:mod:`jobs.refit`) is typed against it and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution
from bayesopt.errors import DistributionValidationError

if TYPE_CHECKING:
    import pandas as pd

    from bayesopt.spec import ExperimentSpec


@dataclass(frozen=True, kw_only=True)
class Proposal:
    """A policy's answer for one refit: the next distribution's arms and what comes with them.

    It carries no version and no timestamps: the refit stamps those once, at publish
    (:meth:`to_distribution`).

    Attributes:
        arms: the proposed distribution, ``k`` arms with weights summing to one; control first.
        diagnostics: plain-JSON facts about the proposal (``kind``, per-arm predictions under ``arms``, ...);
            they become the published distribution's ``diagnostics``.
        model_state: plain-JSON fitted state (hyperparameters per metric); the refit stores it and passes it
            back as ``warm_start`` next time. Empty for policies without a model.
        timings: seconds per step of the policy (for example ``fit``, ``sample``, ``total``).
        num_observations: observation rows the policy used.
    """

    arms: tuple[Arm, ...]
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    model_state: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    num_observations: int = 0

    def __post_init__(self) -> None:
        arms = tuple(self.arms)
        problems = []
        if not arms or not all(isinstance(a, Arm) for a in arms):
            problems.append("arms: must be a non-empty sequence of Arm records")
        elif arms[0].arm_id != CONTROL_ARM_ID:
            problems.append(f"arms[0]: must be the control arm {CONTROL_ARM_ID!r}, got {arms[0].arm_id!r}")
        if isinstance(self.num_observations, bool) or not isinstance(self.num_observations, int) or self.num_observations < 0:
            problems.append(f"num_observations: must be a non-negative integer, got {self.num_observations!r}")
        if problems:
            raise DistributionValidationError(problems)
        object.__setattr__(self, "arms", arms)
        # Copies, so that a caller's later changes to its dicts never reach the record.
        object.__setattr__(self, "diagnostics", dict(self.diagnostics))
        object.__setattr__(self, "model_state", dict(self.model_state))
        object.__setattr__(self, "timings", {str(k): float(v) for k, v in dict(self.timings).items()})

    def to_distribution(
        self,
        spec: ExperimentSpec,
        *,
        version: int,
        created_at: float | None = None,
        valid_from: float | None = None,
        extra_diagnostics: Mapping[str, Any] | None = None,
    ) -> ParameterDistribution:
        """The versioned record to publish. Raises ``DistributionValidationError`` if the arms are not valid."""
        created = time.time() if created_at is None else created_at
        return ParameterDistribution(
            experiment=spec.name,
            version=version,
            arms=self.arms,
            spec_hash=spec.spec_hash,
            control_arm_id=CONTROL_ARM_ID,
            control_share=spec.traffic.control_share,
            created_at=created,
            valid_from=created if valid_from is None else valid_from,
            diagnostics={**dict(self.diagnostics), **dict(extra_diagnostics or {})},
        )


@runtime_checkable
class RefitPolicy(Protocol):
    """The contract between the refit job and a policy.

    ``propose`` receives the experiment's validated spec, the observation table of every window so far
    (:func:`bayesopt.observation_table.observation_table`: one row per (window, arm, metric, source) with
    ``mean``, ``std_error``, ``count`` and the arm's ``x.<parameter>`` values), the distribution served last
    (None before the first refit), a seed, the ``model_state`` of the previous :class:`Proposal` (None when
    there is none) and the refit's clock. It returns one :class:`Proposal` whose arms lie inside the spec's
    bounds, with control first at ``spec.traffic.control_share`` and at most ``spec.policy.max_arms`` arms.

    It is pure given its arguments and the instance's own state: the same inputs and seed give the same
    proposal; it never reads a clock, Redis or the network for its decision.

    Raises:
        bayesopt.InsufficientDataError: the data cannot support a new distribution yet (keep the current one).
        bayesopt.ModelFitError: a model could not be fitted soundly (keep the current one).
        Any other exception is a bug in the policy; the refit keeps the current version and records it.
    """

    #: A short name for logs and run records.
    name: str

    def propose(
        self,
        spec: ExperimentSpec,
        table: pd.DataFrame,
        *,
        previous: ParameterDistribution | None,
        seed: int,
        warm_start: Mapping[str, Any] | None,
        now: float,
    ) -> Proposal: ...
