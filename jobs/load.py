"""Stage 1 of a refit: read everything the policy needs from the store, and check the stored data.

Stored statistics are validated when they are added, but the hash can still be written by some other writer
(``HSET`` by hand, a buggy pipeline): a NaN or a negative count found here is reported, never fitted on. The
checks themselves live next to the observation records (:func:`bayesopt.observation_table.stats_problems`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayesopt.distribution import ParameterDistribution
from bayesopt.errors import ValidationError
from bayesopt.observation_table import observation_table, simulator_table, stats_problems
from bayesopt.spec import ExperimentSpec
from param_store import ParamStore, VersionNotFoundError


@dataclass(frozen=True)
class RefitInputs:
    """What a refit reads. ``table`` is None when ``problems`` is not empty.

    Attributes:
        stats: the stored statistics, columns ``bayesopt.STAT_COLUMNS``, one row per (version, arm, metric, source).
        table: the model table (``bayesopt.observation_table.observation_table``).
        arm_values: parameter values of every arm in ``stats``, from the versions it was served in.
        previous: the current distribution (None before the first publish).
        previous_refit: the refit bookkeeping stored with ``previous`` (``diagnostics["refit"]``), if any.
        warm_start: the model state saved with the last published fit, if any.
        data_hash: a digest of ``spec`` and ``stats``; equal inputs give equal digests in every process.
    """

    spec: ExperimentSpec
    stats: pd.DataFrame
    table: pd.DataFrame | None
    arm_values: dict[str, dict[str, float]]
    previous: ParameterDistribution | None
    warm_start: dict[str, Any] | None
    data_hash: str
    problems: list[str] = field(default_factory=list)

    @property
    def previous_refit(self) -> Mapping[str, Any]:
        if self.previous is None:
            return {}
        refit = self.previous.diagnostics.get("refit")
        return refit if isinstance(refit, Mapping) else {}

    @property
    def observation_count(self) -> float:
        counts = self.stats["count"].to_numpy(dtype=float)
        return float(np.nansum(np.where(counts > 0, counts, 0.0)))


def load_inputs(store: ParamStore, name: str, *, spec: ExperimentSpec | None = None) -> RefitInputs:
    """Read spec, statistics, arm values, the current distribution and the warm start of experiment ``name``."""
    spec = spec or store.load_spec(name)
    try:
        previous = store.current(name)
    except VersionNotFoundError:
        previous = None
    saved = store.load_model_state(name)
    warm_start = saved.get("state") if saved else None
    try:
        stats = store.observations(name)
    except (ValueError, UnicodeDecodeError) as exc:  # a field or value the codec cannot read
        stats = pd.DataFrame(columns=["version", "arm_id", "metric", "source", "count", "sum", "sum_sq"])
        problems = [f"observations: the stored statistics cannot be decoded ({exc})"]
        return RefitInputs(spec, stats, None, {}, previous, warm_start, data_hash(spec, stats), problems)
    sim = store.simulator_observations(name) if spec.simulator_metrics else None
    problems = stats_problems(stats) + ([] if sim is None else stats_problems(sim.assign(version=0, arm_id=sim["run"], source="simulation")))
    arm_values: dict[str, dict[str, float]] = {}
    table = None
    if not problems:
        try:
            arm_values = served_arm_values(store, name, stats)
            table = observation_table(spec, stats, arm_values)
            if sim is not None and len(sim):
                table = pd.concat([table, simulator_table(spec, sim)], ignore_index=True)
        except (VersionNotFoundError, ValidationError) as exc:
            problems = list(getattr(exc, "problems", None) or [str(exc)])
    return RefitInputs(spec, stats, table, arm_values, previous, warm_start, data_hash(spec, stats, sim), problems)


def served_arm_values(store: ParamStore, name: str, stats: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Parameter values of every arm in ``stats``, from the store's arm-values index (newest serving version wins).

    Arms the index lacks were served only by versions stored before the index existed: their values are read
    from those versions (the ones ``stats`` has rows of them for) and written into the index, so the next refit
    reads the index alone.
    """
    arm_ids = set(stats["arm_id"].astype(str))
    values = store.arm_values(name, arm_ids)
    missing = stats[~stats["arm_id"].isin(values)]
    if not missing.empty:
        dists = store.load_versions(name, {int(v) for v in missing["version"]})
        store.index_arm_values(dists.values())
        for _, dist in sorted(dists.items()):
            values.update((arm.arm_id, dict(arm.values)) for arm in dist.arms if arm.arm_id in arm_ids)
    return values


def data_hash(spec: ExperimentSpec, stats: pd.DataFrame, simulator: pd.DataFrame | None = None) -> str:
    """16 hex digits over the spec hash and every statistic, online and simulator (order-independent: both
    frames are sorted on read)."""
    digest = hashlib.sha256(spec.spec_hash.encode())
    for frame in (stats, simulator):
        if frame is not None and not frame.empty:
            digest.update(pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
