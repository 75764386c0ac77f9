"""Roll-up of old windows: the sums pooling needs from them, so a refit reads those instead of their rows.

Pooling (``bayesopt.pooling``) only ever adds per-window terms. For the windows before a ``watermark``, and
each modelled metric, a :class:`Rollup` keeps:

- per arm, ``sum_w r_w / var_w``, ``sum_w r_w * delta_w / var_w`` and the row count (``delta_w`` and
  ``var_w`` relative to the window's control level, as pooling takes them, unless the metric is absolute), with
  ``r_w = 2 ** ((w - watermark) / half_life)`` (1 without a half-life): a window's decay at read time,
  ``0.5 ** ((newest - w) / half_life)``, is ``r_w * 0.5 ** ((newest - watermark) / half_life)``, so the decay
  factors out and the sums stay exact as new windows arrive;
- control's baseline sums ``sum r_w * count * mean``, ``sum r_w * count``, ``sum r_w / var_w`` and its rows;
- the drift test's sums of the rolled windows (:class:`bayesopt.drift.SideSums`), which start the running total
  of the older side of every split, and each arm's sessions there;
- the sums the noise floor's pooled level is made of (:class:`bayesopt.noise.NoiseSums`), whether the
  differences are relative (control's level was positive in every window of the rows rolled from, rolled or
  kept: :func:`bayesopt.window_differences.absolute_metrics`), and every rolled arm's parameter values.

What is not exact: each rolled row's variance is floored with the metric's pooled noise level at the time it
was rolled up (:func:`bayesopt.noise.row_variances`); later rows move that level, and with it the floor of the
rows it binds. The level's sums stay exact, so rows not rolled up are floored exactly as before. A metric
rolled as absolute stays absolute until the roll-up is rebuilt, even if the kept window whose control level
was not positive later turns positive; one rolled as relative whose control level is later not positive makes
the roll-up stale (``jobs.load`` rebuilds it from the rows).

The drift test looks at the last ``MAX_SPLITS`` splits; :data:`KEEP_WINDOWS` windows stay as rows, so every
split it tests, and every cut it makes, lies after the watermark. A roll-up depends on what the spec says
about the data (:func:`rollup_key`): a spec whose metrics, objectives, guardrails, parameters or half-life
changed rebuilds it from the stored rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayesopt.distribution import CONTROL_ARM_ID
from bayesopt.drift import MAX_SPLITS, MIN_WINDOWS_PER_SIDE, EarlierWindows, MetricGrid, SideSums
from bayesopt.noise import NoiseSums, row_variances
from bayesopt.observation_table import param_column
from bayesopt.spec import ExperimentSpec
from bayesopt.window_differences import absolute_metrics, modelled_metrics, window_deltas

SCHEMA_VERSION = 3  # 3: differences relative to control's level
#: Windows (with control rows) kept as rows after a roll-up: the drift test's ``MAX_SPLITS`` splits need
#: ``MAX_SPLITS + MIN_WINDOWS_PER_SIDE`` of them, and a day more is margin.
KEEP_WINDOWS = MAX_SPLITS + MIN_WINDOWS_PER_SIDE + 23
#: Windows beyond :data:`KEEP_WINDOWS` that trigger a roll-up (so an hourly experiment rolls up once a day).
ROLL_EVERY = 24


def rollup_key(spec: ExperimentSpec) -> str:
    """16 hex digits over what a roll-up depends on: metric kinds, modelled metrics, parameters, half-life."""
    doc = {"schema": SCHEMA_VERSION, "metrics": [[m.name, m.kind] for m in spec.metrics],
           "objectives": sorted(o.metric for o in spec.objectives), "guardrails": sorted(g.metric for g in spec.guardrails),
           "parameters": list(spec.parameter_names), "half_life": spec.policy.half_life_hours}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def next_watermark(windows: np.ndarray, spare: int = ROLL_EVERY) -> int | None:
    """The watermark that keeps the newest :data:`KEEP_WINDOWS` of ``windows`` (window numbers with a control
    row, repeats allowed) as rows, or None while there are at most ``KEEP_WINDOWS + spare`` of them."""
    windows = np.unique(windows)
    if len(windows) <= KEEP_WINDOWS + spare:
        return None
    return int(windows[-KEEP_WINDOWS])


@dataclass(frozen=True, eq=False)
class MetricRollup:
    """One metric's sums over the rolled windows (``k`` arms with pooled sums, ``j`` arms in the drift sums)."""

    noise: NoiseSums
    arm_ids: list[str]
    weight: np.ndarray  # k: sum r / var
    weighted_delta: np.ndarray  # k: sum r * delta / var
    rows: np.ndarray  # k
    baseline: np.ndarray  # 4: control's sum r * count * mean, sum r * count, sum r / var, rows
    drift_arms: list[str]
    drift: SideSums  # over j = len(drift_arms)
    drift_sessions: np.ndarray  # j: each drift arm's sessions in the rolled windows
    relative: bool  # the differences are relative to each window's control level (see the module docstring)

    def __add__(self, other: MetricRollup) -> MetricRollup:
        arms = sorted(set(self.arm_ids) | set(other.arm_ids))
        drift_arms = sorted(set(self.drift_arms) | set(other.drift_arms))
        pooled = [_aligned(arms, self.arm_ids, a) + _aligned(arms, other.arm_ids, b)
                  for a, b in ((self.weight, other.weight), (self.weighted_delta, other.weighted_delta),
                               (self.rows, other.rows))]
        return MetricRollup(self.noise + other.noise, arms, *pooled, self.baseline + other.baseline, drift_arms,
                            self.drift.aligned(self.drift_arms, drift_arms) + other.drift.aligned(other.drift_arms, drift_arms),
                            _aligned(drift_arms, self.drift_arms, self.drift_sessions)
                            + _aligned(drift_arms, other.drift_arms, other.drift_sessions),
                            self.relative and other.relative)

    def scaled(self, factor: float) -> MetricRollup:
        """The decayed sums times ``factor`` (moving the watermark: ``r_w`` changes by one factor for all)."""
        baseline = self.baseline * np.array([factor, factor, factor, 1.0])
        return MetricRollup(self.noise, self.arm_ids, self.weight * factor, self.weighted_delta * factor, self.rows,
                            baseline, self.drift_arms, self.drift, self.drift_sessions, self.relative)

    def to_dict(self) -> dict[str, Any]:
        d = self.drift
        return {"noise": self.noise.to_list(), "arm_ids": self.arm_ids, "weight": self.weight.tolist(),
                "weighted_delta": self.weighted_delta.tolist(), "rows": self.rows.tolist(),
                "baseline": self.baseline.tolist(), "drift_arms": self.drift_arms,
                "drift_sessions": self.drift_sessions.tolist(), "relative": self.relative,
                "drift": {"inv_sum": d.inv_sum.tolist(), "weighted": d.weighted.tolist(), "own": d.own.tolist(),
                          "shared": d.shared.tolist()}}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> MetricRollup:
        d = doc["drift"]
        k = len(doc["drift_arms"])
        drift = SideSums(np.asarray(d["inv_sum"], float), np.asarray(d["weighted"], float),
                         np.asarray(d["own"], float), np.asarray(d["shared"], float).reshape(k, k))
        return cls(NoiseSums(*doc["noise"]), list(doc["arm_ids"]), np.asarray(doc["weight"], float),
                   np.asarray(doc["weighted_delta"], float), np.asarray(doc["rows"], float),
                   np.asarray(doc["baseline"], float), list(doc["drift_arms"]), drift,
                   np.asarray(doc["drift_sessions"], float), bool(doc["relative"]))


@dataclass(frozen=True, eq=False)
class Rollup:
    """Sums of the online rows of every window before ``watermark`` (see the module docstring).

    Attributes:
        key: :func:`rollup_key` of the spec it was built under.
        watermark: the first window not rolled up.
        windows: distinct windows rolled up.
        rows: model-table rows rolled up (online, modelled metrics).
        rows_without_control: of those, arm rows whose window had no control row for the metric.
        outcomes: outcomes (counts) of every online row rolled up, any metric.
        arm_values: parameter values of every rolled arm.
        metrics: per modelled metric, its sums.
    """

    key: str
    watermark: int
    windows: int
    rows: int
    rows_without_control: int
    outcomes: float = 0.0
    arm_values: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics: dict[str, MetricRollup] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> Rollup:
        return self  # immutable; a model table carries it in ``attrs``, which pandas deep-copies on every operation

    @property
    def noise(self) -> dict[str, NoiseSums]:
        return {m: r.noise for m, r in self.metrics.items()}

    def decay(self, newest: int, half_life_hours: float | None) -> float:
        """The factor that turns the stored ``r_w`` into each rolled window's decay when ``newest`` is the newest."""
        return 1.0 if half_life_hours is None else float(0.5 ** ((newest - self.watermark) / half_life_hours))

    @property
    def absolute_metrics(self) -> set[str]:
        """Metrics whose rolled differences are absolute."""
        return {m for m, r in self.metrics.items() if not r.relative}

    def drift_sums(self) -> dict[str, EarlierWindows]:
        """Per metric, the drift test's arms, sums and sessions of the rolled windows."""
        return {m: EarlierWindows(r.drift_arms, r.drift, r.drift_sessions) for m, r in self.metrics.items()}

    def to_json(self) -> str:
        doc = {"schema_version": SCHEMA_VERSION, "key": self.key, "watermark": self.watermark, "windows": self.windows,
               "rows": self.rows, "rows_without_control": self.rows_without_control, "outcomes": self.outcomes, "arm_values": self.arm_values,
               "metrics": {m: r.to_dict() for m, r in sorted(self.metrics.items())}}
        return json.dumps(doc, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Rollup | None:
        """The roll-up in ``raw``, or None if it was written under another schema."""
        doc = json.loads(raw)
        if doc.get("schema_version") != SCHEMA_VERSION:
            return None
        return cls(doc["key"], int(doc["watermark"]), int(doc["windows"]), int(doc["rows"]),
                   int(doc["rows_without_control"]), float(doc["outcomes"]), {a: dict(v) for a, v in doc["arm_values"].items()},
                   {m: MetricRollup.from_dict(r) for m, r in doc["metrics"].items()})


def roll_up(spec: ExperimentSpec, table: pd.DataFrame, watermark: int, previous: Rollup | None = None) -> Rollup:
    """Roll the online rows of ``table`` before ``watermark`` into ``previous`` (or into a new roll-up).

    Args:
        spec: the experiment.
        table: every row not rolled up yet (``bayesopt.observation_table``), before and after the watermark;
            the rows after it count towards the noise level the rolled rows are floored with.
        watermark: the first window to keep as rows (after ``previous.watermark``).
        previous: the roll-up so far, under the same :func:`rollup_key`.

    Raises:
        ValueError: ``table`` has a control level that is not positive for a metric ``previous`` summed as
            relative (a stale roll-up: ``jobs.load`` rebuilds those from the rows).
    """

    moved = table[(table["source"] == "online") & (table["window"] < watermark)]
    online = table[(table["source"] == "online") & table["metric"].isin(modelled_metrics(spec))]
    old, new = online[online["window"] < watermark].reset_index(drop=True), online[online["window"] >= watermark]
    levels = _noise_sums(new)
    for metric, sums in (previous.noise if previous else {}).items():
        levels[metric] = levels[metric] + sums if metric in levels else sums
    old_var = row_variances(spec, old, levels)
    absolute = absolute_metrics(online, previous.absolute_metrics if previous else frozenset())  # as pooling decides it
    turned = [] if previous is None else sorted((absolute & set(previous.metrics)) - previous.absolute_metrics)
    if turned:
        raise ValueError(f"roll-up: control's level of {', '.join(turned)} is no longer positive in every window; "
                         "the previous roll-up summed relative differences and must be rebuilt from the rows")
    deltas, without_control = window_deltas(spec, old, levels, absolute)
    half_life = spec.policy.half_life_hours
    r = (lambda w: np.ones(len(w))) if half_life is None else (lambda w: 2.0 ** ((np.asarray(w, float) - watermark) / half_life))
    metrics: dict[str, MetricRollup] = {}
    for metric, noise in _noise_sums(old).items():
        rows = deltas[deltas["metric"] == metric]
        precision = r(rows["window"]) / rows["var"].to_numpy(float)
        sums = pd.DataFrame({"arm_id": rows["arm_id"].to_numpy(), "w": precision,
                             "wd": precision * rows["delta"].to_numpy(float), "rows": 1.0}).groupby("arm_id", sort=True).sum()
        is_control = (old["metric"] == metric) & (old["arm_id"] == CONTROL_ARM_ID)
        control = old[is_control]
        rc = r(control["window"])
        count, mean = control["count"].to_numpy(float), control["mean"].to_numpy(float)
        baseline = np.array([np.sum(rc * count * mean), np.sum(rc * count), np.sum(rc / old_var[is_control.to_numpy()]),
                             float(len(control))])
        if len(rows):
            grid = MetricGrid.from_rows(rows)
            drift_arms, drift = grid.arms, SideSums.of(grid.delta, grid.var, grid.control_var)
            sessions = rows.groupby("arm_id", sort=True)["count"].sum().reindex(grid.arms).to_numpy(float)
        else:
            drift_arms, drift = [], SideSums(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 0)))
            sessions = np.zeros(0)
        metrics[metric] = MetricRollup(noise, [str(a) for a in sums.index], sums["w"].to_numpy(), sums["wd"].to_numpy(),
                                       sums["rows"].to_numpy(), baseline, [str(a) for a in drift_arms], drift,
                                       sessions, metric not in absolute)
    arm_values = {str(a): {p: float(v) for p, v in zip(spec.parameter_names, values, strict=True)}
                  for a, *values in deltas.drop_duplicates("arm_id")[["arm_id", *map(param_column, spec.parameter_names)]]
                  .itertuples(index=False)}
    rolled = Rollup(rollup_key(spec), watermark, int(moved["window"].nunique()), len(old), without_control,
                    float(moved["count"].sum()), arm_values, metrics)
    return rolled if previous is None else _combined(previous, rolled, half_life)


def _combined(older: Rollup, newer: Rollup, half_life: float | None) -> Rollup:
    """``older`` and ``newer`` (disjoint windows, ``newer`` after) as one roll-up at ``newer``'s watermark."""
    factor = older.decay(newer.watermark, half_life)
    metrics = dict(newer.metrics)
    for metric, sums in older.metrics.items():
        metrics[metric] = sums.scaled(factor) + metrics[metric] if metric in metrics else sums.scaled(factor)
    return Rollup(newer.key, newer.watermark, older.windows + newer.windows, older.rows + newer.rows,
                  older.rows_without_control + newer.rows_without_control, older.outcomes + newer.outcomes,
                  {**older.arm_values, **newer.arm_values}, metrics)


def _noise_sums(table: pd.DataFrame) -> dict[str, NoiseSums]:
    """Per metric of ``table``, the :class:`NoiseSums` of its rows."""
    out = {}
    for metric, rows in table.groupby("metric", sort=True):
        out[str(metric)] = NoiseSums.of(np.maximum(rows["count"].to_numpy(float), 1.0), rows["mean"].to_numpy(float),
                                        rows["std_error"].to_numpy(float))
    return out


def _aligned(arms: list[str], have: list[str], values: np.ndarray) -> np.ndarray:
    """``values`` of the arms ``have`` placed at their positions in ``arms`` (zeros elsewhere)."""
    out = np.zeros(len(arms))
    out[np.searchsorted(arms, have)] = values
    return out
