"""Decide and ship: an analyst's overrides of what the refits publish, each recorded in the store.

- **pin**: publish a version that serves one arm to everyone (recorded in ``diagnostics["override"]``) and
  freeze, so no refit replaces it. The pinned arm is that version's control arm, the arm every member outside
  the exploration gets: with it alone in the distribution, everyone gets it, in or out of the experiment.
- **freeze** / **unfreeze**: keep serving the current version; refits skip while frozen.
- **ship**: compute the impact report, pin the chosen arm, store the decision with the report beside it and end
  the experiment; an ended experiment serves the current version's control arm, which is now the shipped one.

The one home of these actions, for ``bayesopt pin|freeze|unfreeze|ship`` and the admin routes.
"""

from __future__ import annotations

import time
from typing import Any

from bayesopt.distribution import Arm, ParameterDistribution
from param_store.errors import VersionNotFoundError
from param_store.reports import experiment_report
from param_store.state import ExperimentState, check_transition
from param_store.store import ParamStore


def served_arm(store: ParamStore, name: str, arm_id: str) -> tuple[Arm, int]:
    """The arm ``arm_id`` as last served (newest version first) and that version; raises
    :class:`VersionNotFoundError` naming the arms that were served."""
    history = store.history(name)
    dists = store.load_versions(name, [v for v, _ in history])
    for version in sorted(dists, reverse=True):
        for arm in dists[version].arms:
            if arm.arm_id == arm_id:
                return arm, version
    known = sorted({a.arm_id for d in dists.values() for a in d.arms})
    raise VersionNotFoundError(f"arm_id {arm_id!r}: never served by {name!r} (served: {', '.join(known)})")


def pin(store: ParamStore, name: str, arm_id: str, *, reason: str = "", by: str = "analyst",
        now: float | None = None) -> ParameterDistribution:
    """Publish a version serving ``arm_id`` to everyone, record why, and freeze; returns the new version."""
    now = time.time() if now is None else now
    arm, source = served_arm(store, name, arm_id)
    spec = store.load_spec(name)
    override = {"kind": "pin", "arm_id": arm_id, "reason": reason, "by": by, "at": now, "from_version": source}
    dist = ParameterDistribution(
        experiment=name, version=store.next_version(name), arms=(Arm(arm_id, dict(arm.values), 1.0),),
        spec_hash=spec.spec_hash, control_arm_id=arm_id, control_share=spec.traffic.control_share,
        created_at=now, valid_from=now, diagnostics={"override": override})
    store.publish(dist)
    store.set_frozen(name, True, note={**override, "version": dist.version})
    return dist


def freeze(store: ParamStore, name: str, *, reason: str = "", by: str = "analyst", now: float | None = None) -> dict[str, Any]:
    """Keep serving the current version (refits skip); returns the note stored."""
    note = {"kind": "freeze", "reason": reason, "by": by, "at": time.time() if now is None else now,
            "version": store.current_version(name)}
    store.set_frozen(name, True, note=note)
    return note


def unfreeze(store: ParamStore, name: str) -> None:
    """Let refits publish again."""
    store.set_frozen(name, False)


def ship(store: ParamStore, name: str, arm_id: str, *, reason: str = "", by: str = "analyst",
         now: float | None = None) -> dict[str, Any]:
    """End ``name`` serving ``arm_id`` to everyone, with the report of why it was chosen stored beside it.

    The report is computed first (on the windows the decision was made on); then the pin, the decision and the
    end. Raises :class:`InvalidTransitionError` for an experiment that ended already (nothing is written).
    """
    check_transition(name, store.state(name), ExperimentState.ENDED)
    report = experiment_report(store, name)
    dist = pin(store, name, arm_id, reason=reason, by=by, now=now)
    decision = {"arm_id": arm_id, "values": dict(dist.arms[0].values), "version": dist.version, "reason": reason,
                "by": by, "at": dist.created_at, "report": report}
    store.save_shipped(name, decision)
    store.transition(name, ExperimentState.ENDED)
    return {**decision, "state": ExperimentState.ENDED.value}
