"""The impact report of a stored experiment (see :mod:`bayesopt.report`): the store's history and observations in,
a JSON-ready document out. Light (standard library statistics), so serving's report route can call it.
"""

from __future__ import annotations

from typing import Any

from bayesopt.report import DEFAULT_CONFIDENCE, Activation, impact_report
from param_store.store import ParamStore


def activations(store: ParamStore, name: str) -> list[Activation]:
    """Every activated version of ``name`` with its activation time, oldest first."""
    history = store.history(name)
    dists = store.load_versions(name, [v for v, _ in history])
    return [Activation(dists[v], at) for v, at in history]


def experiment_report(store: ParamStore, name: str, *, confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    """The impact report of ``name`` from everything stored, with its state and current version."""
    doc = impact_report(store.load_spec(name), activations(store, name), store.observation_stats(name),
                        confidence=confidence)
    return {"state": store.state(name).value, "current_version": store.current_version(name), **doc}
