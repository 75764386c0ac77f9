"""Observation records: sufficient statistics per (version, arm, metric, source). Light: no torch, no pandas.

A row arrives in one of three forms and is stored as ``count``, ``sum`` and ``sum_sq``, which add across batches:

- aggregates: ``count``, ``sum``, ``sum_sq``;
- pre-aggregated: ``count``, ``mean``, ``std_error`` (the standard error of the mean);
- one member's outcome: ``value`` (a count of one).

Every row also names ``version``, ``arm_id``, ``metric`` and optionally ``source`` (``online`` by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bayesopt.errors import ObservationValidationError
from bayesopt.spec import NAME_PATTERN, NAME_RULE

SOURCES = ("online", "simulation")
#: Columns of the table that ``param_store`` returns and ``bayesopt`` models read.
STAT_COLUMNS = ("version", "arm_id", "metric", "source", "count", "sum", "sum_sq")
#: Relative slack for ``sum_sq >= sum**2 / count`` (a variance can't be negative, but rounding can say so).
VARIANCE_TOLERANCE = 1e-9
MAX_ROWS_PER_BATCH = 100_000


@dataclass(frozen=True)
class ObservationStat:
    """Sufficient statistics of ``count`` outcomes of ``metric`` on ``arm_id`` while ``version`` was served."""

    version: int
    arm_id: str
    metric: str
    source: str
    count: float
    sum: float
    sum_sq: float

    @property
    def key(self) -> tuple[int, str, str, str]:
        return (self.version, self.arm_id, self.metric, self.source)

    @property
    def mean(self) -> float:
        return self.sum / self.count

    @property
    def variance(self) -> float:
        """Unbiased sample variance of one outcome (0 for a single outcome)."""
        if self.count <= 1:
            return 0.0
        return max(0.0, (self.sum_sq - self.sum * self.sum / self.count) / (self.count - 1))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in STAT_COLUMNS}


#: Every field a raw row may carry; anything else is refused (a misspelt ``coutn`` must not be silently dropped).
ROW_FIELDS = frozenset({"version", "arm_id", "metric", "source", "count", "sum", "sum_sq", "mean", "std_error", "value"})


def _number(row: Mapping[str, Any], key: str, path: str, problems: list[str]) -> float | None:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{path}.{key}: must be a number, got {value!r}")
        return None
    if not math.isfinite(value):
        problems.append(f"{path}.{key}: must be finite, got {value!r}")
        return None
    return float(value)


def parse_row(row: Any, path: str, problems: list[str]) -> ObservationStat | None:
    """Validate one raw row; append ``path.field: problem`` strings to ``problems`` and return None if bad."""
    if not isinstance(row, Mapping):
        problems.append(f"{path}: expected an object, got {type(row).__name__}")
        return None
    before = len(problems)
    unknown = sorted(str(k) for k in row if k not in ROW_FIELDS)
    if unknown:
        problems.append(f"{path}: unknown field(s) {', '.join(map(repr, unknown))}; a row has {', '.join(sorted(ROW_FIELDS))}")
    version = row.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        problems.append(f"{path}.version: must be a positive integer, got {version!r}")
    for key in ("arm_id", "metric"):
        value = row.get(key)
        if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
            problems.append(f"{path}.{key}: must be a name of {NAME_RULE}, got {value!r}")
    source = row.get("source", "online")
    if source not in SOURCES:
        problems.append(f"{path}.source: must be one of {SOURCES}, got {source!r}")
    stats = _stats(row, path, problems)
    if len(problems) > before or stats is None:
        return None
    return ObservationStat(version, row["arm_id"], row["metric"], source, *stats)


def _stats(row: Mapping[str, Any], path: str, problems: list[str]) -> tuple[float, float, float] | None:
    if "value" in row:
        value = _number(row, "value", path, problems)
        return None if value is None else (1.0, value, value * value)
    count = _number(row, "count", path, problems)
    if count is not None and count <= 0:
        problems.append(f"{path}.count: must be positive, got {count!r}")
        count = None
    if "mean" in row or "std_error" in row:
        mean = _number(row, "mean", path, problems)
        se = _number(row, "std_error", path, problems)
        if se is not None and se < 0:
            problems.append(f"{path}.std_error: must be >= 0, got {se!r}")
            se = None
        if count is None or mean is None or se is None:
            return None
        variance = se * se * count  # of one outcome
        return count, mean * count, variance * max(count - 1.0, 0.0) + mean * mean * count
    if "sum" not in row and "sum_sq" not in row:
        problems.append(f"{path}: give count+sum+sum_sq, count+mean+std_error, or value")
        return None
    total = _number(row, "sum", path, problems)
    total_sq = _number(row, "sum_sq", path, problems)
    if count is None or total is None or total_sq is None:
        return None
    floor = total * total / count
    if total_sq < floor - VARIANCE_TOLERANCE * max(1.0, abs(floor)):
        problems.append(f"{path}.sum_sq: {total_sq!r} is below sum**2/count = {floor!r} (a negative variance)")
        return None
    return count, total, total_sq


def parse_rows(rows: Iterable[Any], *, path: str = "rows", parse: Callable[[Any, str, list[str]], Any] = parse_row) -> list[Any]:
    """Validate a whole batch; raise :class:`ObservationValidationError` naming every bad row, or return all.

    ``parse(row, path, problems)`` validates one row (default :func:`parse_row`; simulator rows have their own).
    """
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise ObservationValidationError(f"{path}: expected a list of rows")
    rows = list(rows)
    if not rows:
        raise ObservationValidationError(f"{path}: must not be empty")
    if len(rows) > MAX_ROWS_PER_BATCH:
        raise ObservationValidationError(f"{path}: {len(rows)} rows exceed the limit of {MAX_ROWS_PER_BATCH} per batch")
    problems: list[str] = []
    out = [parse(row, f"{path}[{i}]", problems) for i, row in enumerate(rows)]
    if problems:
        raise ObservationValidationError(problems)
    return [s for s in out if s is not None]


def merge(stats: Iterable[Any], record: type = ObservationStat) -> list[Any]:
    """Add up rows that share a key (version, arm, metric, source; or the ``key`` of ``record``); keep
    first-seen order. ``record(*key, count, sum, sum_sq)`` builds each sum."""
    merged: dict[tuple[Any, ...], list[float]] = {}
    for s in stats:
        acc = merged.setdefault(s.key, [0.0, 0.0, 0.0])
        acc[0] += s.count
        acc[1] += s.sum
        acc[2] += s.sum_sq
    return [record(*key, *acc) for key, acc in merged.items()]
