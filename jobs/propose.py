"""Stages 2 and 3 of a refit, fit and sample: the policy's own work, behind :class:`~bayesopt.proposal.RefitPolicy`.

The policy fits its models (for the GP policy, :mod:`bayesopt.gp`) and samples the next distribution
(:mod:`bayesopt.thompson`); this module resolves which policy runs and turns its failures into run outcomes.
"""

from __future__ import annotations

import importlib
import inspect

from bayesopt.errors import InsufficientDataError
from bayesopt.proposal import Proposal, RefitPolicy
from jobs.errors import PolicyNotFoundError
from jobs.load import RefitInputs
from jobs.runs import Reason, RefitStop, RunStatus

DEFAULT_POLICY = "bayesopt.policy:GPPolicy"

#: A policy object, or ``"package.module:name"`` naming one (a class is instantiated with no arguments), so
#: that a refit's arguments stay picklable for process pools, Ray or Dask.
PolicyRef = RefitPolicy | str


def resolve_policy(policy: PolicyRef | None) -> RefitPolicy:
    """The :class:`RefitPolicy` that ``policy`` names (None: :data:`DEFAULT_POLICY`).

    Raises:
        PolicyNotFoundError: ``policy`` is a malformed reference, or names something that is not a ``RefitPolicy``.
    """
    if policy is not None and not isinstance(policy, str):
        if not isinstance(policy, RefitPolicy):
            raise PolicyNotFoundError(f"policy: {policy!r} does not implement RefitPolicy (a `name` and a `propose` method)")
        return policy
    module_name, _, attr = (policy or DEFAULT_POLICY).partition(":")
    if not attr:
        raise PolicyNotFoundError(f"policy: should look like 'package.module:Name', got {policy!r}")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PolicyNotFoundError(f"policy: cannot load {policy!r} ({type(exc).__name__}: {exc})") from exc
    obj = found() if inspect.isclass(found) else found
    if not isinstance(obj, RefitPolicy):
        raise PolicyNotFoundError(f"policy: {policy!r} does not implement RefitPolicy (a `name` and a `propose` method)")
    return obj


def run_policy(policy: RefitPolicy, inputs: RefitInputs, *, seed: int, now: float) -> Proposal:
    """The policy's proposal for ``inputs``.

    Raises:
        RefitStop: kept for insufficient data, or for a failed fit (any exception of the policy: the current
            version stays).
    """
    try:
        proposal = policy.propose(
            inputs.spec, inputs.table, previous=inputs.previous, seed=seed, warm_start=inputs.warm_start, now=now,
        )
    except InsufficientDataError as exc:
        raise RefitStop(RunStatus.KEPT, Reason.INSUFFICIENT_DATA, str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - any policy failure keeps the current version
        raise RefitStop(RunStatus.KEPT, Reason.FIT_FAILED, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(proposal, Proposal):
        raise RefitStop(RunStatus.KEPT, Reason.FIT_FAILED,
                        f"policy {policy.name!r} returned {type(proposal).__name__}, not a Proposal")
    return proposal
