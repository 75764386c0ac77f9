"""Launching an experiment: validate, store as draft, publish the initial design, start running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayesopt.launch_design import initial_distribution
from bayesopt.distribution import ParameterDistribution
from bayesopt.spec import ExperimentSpec
from param_store import ExperimentState, ParamStore


def launch_experiment(store: ParamStore, source: ExperimentSpec | dict[str, Any] | str | Path, *, now: float | None = None) -> ParameterDistribution:
    """Store the spec, publish version 1 (a space-filling design around control) and mark it running."""
    spec = ExperimentSpec.load(source)
    store.create_experiment(spec)
    dist = initial_distribution(spec, version=store.next_version(spec.name), now=now)
    store.publish(dist)
    store.transition(spec.name, ExperimentState.RUNNING)
    return dist
