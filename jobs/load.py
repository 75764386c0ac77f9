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

from bayesopt.distribution import CONTROL_ARM_ID, ParameterDistribution
from bayesopt.errors import ValidationError
from bayesopt.observation_table import observation_table, simulator_table, stats_problems
from bayesopt.pooling import ROLLUP_ATTR
from bayesopt.rollup import ROLL_EVERY, Rollup, next_watermark, roll_up, rollup_key
from bayesopt.spec import ExperimentSpec
from param_store import ParamStore, VersionNotFoundError
from param_store.store import RecentObservations


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
        data_hash: a digest of ``spec``, ``stats`` and ``rollup``; equal inputs give equal digests in every process.
        rollup: the sums of the windows rolled up before ``stats`` (``bayesopt.rollup``), if any.
    """

    spec: ExperimentSpec
    stats: pd.DataFrame
    table: pd.DataFrame | None
    arm_values: dict[str, dict[str, float]]
    previous: ParameterDistribution | None
    warm_start: dict[str, Any] | None
    data_hash: str
    problems: list[str] = field(default_factory=list)
    rollup: Rollup | None = None

    @property
    def previous_refit(self) -> Mapping[str, Any]:
        if self.previous is None:
            return {}
        refit = self.previous.diagnostics.get("refit")
        return refit if isinstance(refit, Mapping) else {}

    @property
    def observation_count(self) -> float:
        """Outcomes in ``stats`` and in the roll-up's modelled rows."""
        counts = self.stats["count"].to_numpy(dtype=float)
        return float(np.nansum(np.where(counts > 0, counts, 0.0))) + (self.rollup.outcomes if self.rollup else 0.0)

    @property
    def table_rows(self) -> int:
        """Rows of the model table, rolled-up ones included."""
        return (0 if self.table is None else len(self.table)) + (self.rollup.rows if self.rollup else 0)


def load_inputs(store: ParamStore, name: str, *, spec: ExperimentSpec | None = None,
                roll_up: bool = True) -> RefitInputs:
    """Read spec, statistics, arm values, the current distribution and the warm start of experiment ``name``.

    The statistics are those not rolled up yet, and the roll-up of the others (``bayesopt.rollup``; the table
    carries it in ``attrs``, where pooling finds it). With ``roll_up``, windows past the roll-up's margin are
    rolled up now (see :func:`rolled_inputs`).
    """
    spec = spec or store.load_spec(name)
    try:
        previous = store.current(name)
    except VersionNotFoundError:
        previous = None
    saved = store.load_model_state(name)
    warm_start = saved.get("state") if saved else None
    try:
        recent = store.recent_observations(name)
    except (ValueError, UnicodeDecodeError) as exc:  # a field or value the codec cannot read
        stats = pd.DataFrame(columns=["version", "arm_id", "metric", "source", "count", "sum", "sum_sq"])
        problems = [f"observations: the stored statistics cannot be decoded ({exc})"]
        return RefitInputs(spec, stats, None, {}, previous, warm_start, data_hash(spec, stats), problems)
    sim = store.simulator_observations(name) if spec.simulator_metrics else None
    sim_problems = [] if sim is None else stats_problems(sim.assign(version=0, arm_id=sim["run"], source="simulation"))
    stats, rollup = recent.stats, _parsed(recent.rollup)
    if _stale(spec, stats, recent.rollup, rollup):
        stats, rollup = store.observations(name), None  # rebuilt from every row below
    problems = stats_problems(stats) + sim_problems
    arm_values: dict[str, dict[str, float]] = {}
    table = None
    if not problems:
        try:
            arm_values = served_arm_values(store, name, stats)
            table = observation_table(spec, stats, arm_values)
            if roll_up:
                stats, table, rollup = rolled_inputs(store, name, spec, recent, stats, table, rollup)
            if sim is not None and len(sim):
                table = pd.concat([table, simulator_table(spec, sim)], ignore_index=True)
            if rollup is not None:
                table.attrs[ROLLUP_ATTR] = rollup
        except (VersionNotFoundError, ValidationError) as exc:
            problems = list(getattr(exc, "problems", None) or [str(exc)])
    digest = data_hash(spec, stats, sim, None if rollup is None else rollup.to_json())
    return RefitInputs(spec, stats, table, arm_values, previous, warm_start, digest, problems, rollup)


def rolled_inputs(store: ParamStore, name: str, spec: ExperimentSpec, recent: RecentObservations, stats: pd.DataFrame,
                  table: pd.DataFrame, rollup: Rollup | None) -> tuple[pd.DataFrame, pd.DataFrame, Rollup | None]:
    """``(stats, table, rollup)`` after rolling up the windows past the margin, if there are enough of them.

    ``stats`` and ``table`` hold every row not in ``rollup``. When :data:`bayesopt.rollup.ROLL_EVERY` windows
    beyond :data:`bayesopt.rollup.KEEP_WINDOWS` have gathered (or ``rollup`` is None while a stale one is
    stored: then ``stats`` holds every row and the roll-up is rebuilt), the older windows' online rows are
    rolled into a new roll-up and moved to the archive in one compare-and-set step; if another writer got
    there first, nothing moves and the rows read are used as they are.
    """
    online = table["source"] == "online"
    control_windows = table.loc[online & (table["arm_id"] == CONTROL_ARM_ID), "window"].to_numpy()
    rebuild = rollup is None and recent.rollup is not None
    watermark = next_watermark(control_windows, spare=0 if rebuild else ROLL_EVERY)
    if watermark is None:
        return stats, table, rollup
    new = roll_up(spec, table, watermark, rollup)
    if not store.roll_up_observations(name, recent, watermark, new.to_json()):
        return stats, table, rollup
    keep_stats = (stats["source"] != "online") | (stats["version"] >= watermark)
    keep_rows = ~online | (table["window"] >= watermark)
    return stats[keep_stats].reset_index(drop=True), table[keep_rows].reset_index(drop=True), new


def _parsed(raw: bytes | None) -> Rollup | None:
    return None if raw is None else Rollup.from_json(raw)


def _stale(spec: ExperimentSpec, stats: pd.DataFrame, raw: bytes | None, rollup: Rollup | None) -> bool:
    """Whether the stored roll-up cannot be used: another schema, another spec, online rows of a rolled window
    arrived after it (a late batch), or control's level of a metric it summed as relative is not positive in a
    recent window (pooling takes that metric's differences as absolute now; counts are positive, so the level's
    sign is the sum's)."""
    if raw is None:
        return False
    if rollup is None or rollup.key != rollup_key(spec):
        return True
    online = stats["source"] == "online"
    relative = set(rollup.metrics) - rollup.absolute_metrics
    not_positive = online & (stats["arm_id"] == CONTROL_ARM_ID) & stats["metric"].isin(relative) & ~(stats["sum"].astype(float) > 0)
    return bool((online & (stats["version"] < rollup.watermark)).any() or not_positive.any())


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


def data_hash(spec: ExperimentSpec, stats: pd.DataFrame, simulator: pd.DataFrame | None = None,
              rollup: str | None = None) -> str:
    """16 hex digits over the spec hash, every statistic, online and simulator (order-independent: both
    frames are sorted on read), and the roll-up's JSON."""
    digest = hashlib.sha256(spec.spec_hash.encode())
    if rollup is not None:
        digest.update(rollup.encode())
    for frame in (stats, simulator):
        if frame is not None and not frame.empty:
            digest.update(pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
