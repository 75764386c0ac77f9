"""Policies for closed-loop runs, each a :class:`bayesopt.proposal.RefitPolicy`, the refit job's one contract.

=========== =====================================================================================
``gp``      the production policy, :class:`bayesopt.policy.GPPolicy` (constrained Thompson sampling)
``utility`` the same class; the closed loop launches its spec with ``policy.method: utility_ts``
``uniform`` fresh uniformly random lattice arms every hour, equal weights
``ab_grid`` a fixed grid chosen at the first hour, equal weights, every hour
``arm_ts``  per-arm Thompson sampling over a fixed arm set, no GP, guardrails per draw
``ax``      Ax's default generation strategy through ``ax.api.client.Client``
=========== =====================================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from bayesopt.proposal import RefitPolicy
from simulations.baselines.arm_ts import ArmTSPolicy
from simulations.baselines.ax_policy import AxPolicy
from simulations.baselines.common import fixed_arm_set, relative_effects, serve
from simulations.baselines.simple import ABGridPolicy, UniformPolicy


def _gp_policy(name: str) -> RefitPolicy:
    from bayesopt.policy import GPPolicy  # loads torch: only when a GP policy is asked for

    return GPPolicy(name=name)


#: Factories by name; each call returns a fresh policy (baselines keep per-run state such as fixed arm sets).
POLICIES: dict[str, Callable[..., RefitPolicy]] = {
    "gp": partial(_gp_policy, "gp"),
    "utility": partial(_gp_policy, "utility"),
    "uniform": UniformPolicy,
    "ab_grid": ABGridPolicy,
    "arm_ts": ArmTSPolicy,
    "ax": AxPolicy,
}


def make_policy(name: str, **options: Any) -> RefitPolicy:
    """A fresh policy called ``name`` (a key of :data:`POLICIES`), built with ``options``."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r} (known: {', '.join(POLICIES)})") from None
    return factory(**options)


__all__ = [
    "POLICIES", "ABGridPolicy", "ArmTSPolicy", "AxPolicy", "UniformPolicy",
    "fixed_arm_set", "make_policy", "relative_effects", "serve",
]
