"""Stage 5 of a refit: stamp the proposal with its version and make it current, if this run still may.

The version number is stamped here and nowhere else: a fresh number from the store's sequence, right before
the atomic write-then-activate of :meth:`param_store.ParamStore.publish`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bayesopt.distribution import ParameterDistribution
from bayesopt.proposal import Proposal
from jobs.load import RefitInputs
from jobs.runs import Reason, RefitStop, RunStatus
from param_store import ParamStore


def publish_proposal(
    store: ParamStore,
    inputs: RefitInputs,
    proposal: Proposal,
    *,
    lease_held: bool,
    created_at: float,
    valid_from: float,
    refit_doc: Mapping[str, Any],
) -> ParameterDistribution:
    """Publish ``proposal`` as the next version of ``inputs.spec``'s experiment and save its model state.

    Raises:
        RefitStop: the period lock was lost (``lease_held`` False), or another version became current while
            this refit ran.
    """
    name = inputs.spec.name
    if not lease_held:
        raise RefitStop(RunStatus.KEPT, Reason.LOCK_LOST, "the period lock expired before publishing", mark_done=False)
    current = store.current_version(name)
    expected = None if inputs.previous is None else inputs.previous.version
    if current != expected:
        raise RefitStop(RunStatus.KEPT, Reason.SUPERSEDED, f"version {current} was published while this refit ran")
    dist = proposal.to_distribution(
        inputs.spec, version=store.next_version(name), created_at=created_at, valid_from=valid_from,
        extra_diagnostics={"refit": dict(refit_doc)},
    )
    store.publish(dist)
    if proposal.model_state:
        store.save_model_state(name, dist.version, dict(proposal.model_state))
    return dist
