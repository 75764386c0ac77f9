"""Launching an experiment: validate the spec, compute the initial design, store it, publish version 1, run.

The one home of launching, used by ``bayesopt launch`` and ``POST /v1/experiments`` (and the simulations). It
sits in ``param_store`` because it is store work that both ``jobs`` and ``serving`` may call; the launch design
(numpy and scipy) is imported inside :func:`launch_experiment`, so importing this module, ``param_store`` or a
serving worker loads no model code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bayesopt.errors import DistributionValidationError
from bayesopt.spec import ExperimentSpec

if TYPE_CHECKING:
    from bayesopt.distribution import ParameterDistribution
    from param_store.store import ParamStore


def launch_experiment(
    store: ParamStore, source: ExperimentSpec | dict[str, Any] | str | Path, *, now: float | None = None
) -> ParameterDistribution:
    """Store the spec, publish version 1 (a space-filling design around control) and mark it running.

    The spec is validated and the design computed and checked before anything is written, and the write is
    one atomic step, so a launch either stores spec and version 1 (running) or nothing.

    Args:
        store: the store to launch into.
        source: a spec, its dict, a JSON string or a path to a YAML/JSON file.
        now: the design's creation time (epoch seconds; default now).

    Returns:
        The published distribution.

    Raises:
        bayesopt.errors.ValidationError: the spec is invalid; nothing was stored.
        ExperimentExistsError: an experiment of that name exists already.
    """
    from bayesopt.launch_design import initial_distribution  # numpy + scipy: only when launching

    spec = ExperimentSpec.load(source)
    first = initial_distribution(spec, version=1, now=now)
    problems = first.problems(spec)
    if problems:
        raise DistributionValidationError(problems)
    store.launch(spec, first)  # one atomic step: spec, state running and version 1 activated, or nothing
    return first
