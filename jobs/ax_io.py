"""Ax in and out of the store: launch an experiment an analyst configured in Ax, export its history to Ax.

The conversions live in :mod:`bayesopt.ax_bridge` and :mod:`bayesopt.ax_history` (pure); this module reads and
writes the store. Both import ax (seconds at first use): only the CLI's Ax commands and analysts' code load it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from param_store import ParamStore
from param_store.launch import launch_experiment
from param_store.reports import activations

if TYPE_CHECKING:
    from ax.api.client import Client

    from bayesopt.ax_bridge import AxSource
    from bayesopt.distribution import ParameterDistribution


def launch_from_ax(
    store: ParamStore, source: AxSource, *, name: str | None = None, metric_kinds: Mapping[str, str] | None = None,
    control: Mapping[str, float] | None = None, overrides: Mapping[str, Any] | None = None, now: float | None = None,
) -> ParameterDistribution:
    """Launch the experiment an Ax ``Client``, ``Experiment`` or saved JSON file configures (see
    :func:`bayesopt.ax_bridge.spec_from_ax` for the arguments); returns version 1."""
    from bayesopt.ax_bridge import spec_from_ax

    spec = spec_from_ax(source, name=name, metric_kinds=metric_kinds, control=control, overrides=overrides)
    return launch_experiment(store, spec, now=now)


def export_ax(store: ParamStore, name: str, path: str | Path | None = None) -> Client:
    """The history of ``name`` as an Ax ``Client`` (see :mod:`bayesopt.ax_history`), saved to ``path`` as Ax
    JSON (``Client.load_from_json_file`` reads it) when a path is given."""
    from bayesopt.ax_history import history_to_ax

    spec = store.load_spec(name)
    client = history_to_ax(spec, activations(store, name), store.observations(name), current_version=store.current_version(name),
                           seed=spec.policy.seed)
    if path is not None:
        client.save_to_json_file(str(path))
    return client
