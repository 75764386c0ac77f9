"""Baseline policies for closed-loop runs, all behind :class:`ProposalPolicy`.

=========== =====================================================================================
``gp``      the production GP policy, constrained Thompson sampling (:class:`GPPolicy`)
``utility`` the same with the LinkedIn-style utility (``GPPolicy(method='utility_ts')``)
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

from simulations.baselines.arm_ts import ArmTSPolicy
from simulations.baselines.ax_policy import AxPolicy
from simulations.baselines.common import ProposalPolicy, fixed_arm_set, relative_effects, serve
from simulations.baselines.gp import GPPolicy
from simulations.baselines.simple import ABGridPolicy, UniformPolicy

#: Factories by name; each call returns a fresh policy (policies keep per-run state such as warm starts).
POLICIES: dict[str, Callable[..., ProposalPolicy]] = {
    "gp": partial(GPPolicy, method="constrained_ts"),
    "utility": partial(GPPolicy, method="utility_ts"),
    "uniform": UniformPolicy,
    "ab_grid": ABGridPolicy,
    "arm_ts": ArmTSPolicy,
    "ax": AxPolicy,
}


def make_policy(name: str, **options: Any) -> ProposalPolicy:
    """A fresh policy called ``name`` (a key of :data:`POLICIES`), built with ``options``."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r} (known: {', '.join(POLICIES)})") from None
    return factory(**options)


__all__ = [
    "POLICIES", "ABGridPolicy", "ArmTSPolicy", "AxPolicy", "GPPolicy", "ProposalPolicy", "UniformPolicy",
    "fixed_arm_set", "make_policy", "relative_effects", "serve",
]
