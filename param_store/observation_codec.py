"""Observation statistics <-> fields of the per-experiment Redis hash.

Each (version, arm, metric, source) owns three float fields, ``...|n``, ``...|s`` and ``...|q`` (count, sum,
sum of squares), which ``HINCRBYFLOAT`` adds to; sums of sufficient statistics are order-independent, so
concurrent writers need no coordination beyond one MULTI per batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from bayesopt.observations import STAT_COLUMNS, ObservationStat
from param_store.keys import FIELD_SEP, STAT_SUFFIXES, Keys

if TYPE_CHECKING:
    import pandas as pd


def increments(stat: ObservationStat) -> list[tuple[str, float]]:
    """The three (field, amount) pairs that add ``stat`` to the hash."""
    parts = (stat.version, stat.arm_id, stat.metric, stat.source)
    return [(Keys.stat_field(*parts, suffix), value) for suffix, value in zip(STAT_SUFFIXES, (stat.count, stat.sum, stat.sum_sq), strict=True)]


def decode_stats(fields: Mapping[bytes, bytes | float]) -> list[ObservationStat]:
    """The statistics in the raw hash, sorted by version, arm, metric, source (no pandas)."""
    return [ObservationStat(*key, *acc) for key, acc in _sorted_rows(fields)]


def decode(fields: Mapping[bytes, bytes | float]) -> pd.DataFrame:
    """A ``STAT_COLUMNS`` frame from the raw hash, sorted by version, arm, metric, source."""
    import pandas as pd  # serving replicas never read observations back, so they need not load pandas

    records = [(*key, *acc) for key, acc in _sorted_rows(fields)]  # the order of STAT_COLUMNS
    frame = pd.DataFrame.from_records(records, columns=list(STAT_COLUMNS))
    return frame.astype({"version": "int64", "count": "float64", "sum": "float64", "sum_sq": "float64"})


def merged(*hashes: Mapping[bytes, bytes | float]) -> dict[bytes, bytes | float]:
    """Raw hashes of the same fields added into one (a field in several holds the sum of its values)."""
    out: dict[bytes, bytes | float] = {}
    for fields in hashes:
        for field, value in fields.items():
            out[field] = float(out[field]) + float(value) if field in out else value
    return out


def _sorted_rows(fields: Mapping[bytes, bytes | float]) -> list[tuple[tuple[int, str, str, str], list[float]]]:
    """``((version, arm_id, metric, source), [count, sum, sum_sq])`` of each statistic in the raw hash, sorted."""
    rows: dict[tuple[int, str, str, str], list[float]] = {}
    position = {suffix: i for i, suffix in enumerate(STAT_SUFFIXES)}
    for raw_field, raw_value in fields.items():
        version, arm_id, metric, source, suffix = raw_field.decode().split(FIELD_SEP)
        acc = rows.setdefault((int(version), arm_id, metric, source), [0.0, 0.0, 0.0])
        acc[position[suffix]] = float(raw_value)
    return sorted(rows.items())
