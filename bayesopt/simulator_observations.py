"""Simulator observation records: statistics per (run, parameter setting, metric). Light: no torch, no pandas.

A simulator (an offline replay of logged traffic through a candidate ranker) is not served, so its rows have no
distribution version and no arm: they name the **run** that produced them (one replay, e.g. one simulator
build over one day of logs) and the **parameter values** they were computed at, which may be settings never
served online. Keying by run keeps every row of one replay together, because a replay's bias is shared by all
its rows (same logs, same simulator build); rows of a run add up like online batches do (count, sum, sum of
squares), and a new day of replays is a new run rather than a change to an old one.

A row is a mapping with ``run``, ``parameters`` (``{name: value}`` for every spec parameter, inside its
bounds), ``metric`` (declared in the spec) and the statistics in one of the three forms of
:mod:`bayesopt.observations` (``count``/``sum``/``sum_sq``, ``count``/``mean``/``std_error``, or ``value``).
``source`` may be given and must then be ``simulation``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from bayesopt.observations import _stats, merge, parse_rows
from bayesopt.spec import NAME_PATTERN, NAME_RULE, ExperimentSpec

SIMULATION = "simulation"
#: Columns of the simulator frame that ``param_store`` returns (plus one ``x.<name>`` column per parameter).
SIMULATOR_COLUMNS = ("run", "metric", "count", "sum", "sum_sq")
#: Slack on a rate's ``sum <= count`` and ``sum_sq <= count`` (pre-aggregated rows are rebuilt into sums).
RATE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SimulatorStat:
    """Sufficient statistics of ``count`` simulated outcomes of ``metric`` at ``values`` in simulator ``run``.

    ``values`` are ``(name, value)`` pairs in the spec's parameter order.
    """

    run: str
    values: tuple[tuple[str, float], ...]
    metric: str
    count: float
    sum: float
    sum_sq: float

    @property
    def key(self) -> tuple[str, tuple[tuple[str, float], ...], str]:
        return (self.run, self.values, self.metric)


def parse_simulator_row(spec: ExperimentSpec, row: Any, path: str, problems: list[str]) -> SimulatorStat | None:
    """Validate one raw row against ``spec``; append ``path.field: problem`` strings and return None if bad."""
    if not isinstance(row, Mapping):
        problems.append(f"{path}: expected an object, got {type(row).__name__}")
        return None
    before = len(problems)
    run = row.get("run")
    if not isinstance(run, str) or not NAME_PATTERN.fullmatch(run):
        problems.append(f"{path}.run: must name the simulator run, a name of {NAME_RULE}, got {run!r}")
    if row.get("source", SIMULATION) != SIMULATION:
        problems.append(f"{path}.source: must be {SIMULATION!r} for a simulator row, got {row.get('source')!r}")
    metric = row.get("metric")
    if metric not in spec.metric_names:
        problems.append(f"{path}.metric: not a metric of {spec.name!r} (declared: {', '.join(spec.metric_names)}), got {metric!r}")
    values = _values(spec, row.get("parameters"), f"{path}.parameters", problems)
    stats = _stats(row, path, problems)
    if stats is not None and metric in spec.metric_names and _is_rate(spec, metric):
        count, total, total_sq = stats
        if not (-RATE_TOLERANCE <= total <= count * (1 + RATE_TOLERANCE) and total_sq <= count * (1 + RATE_TOLERANCE)):
            problems.append(f"{path}: metric {metric!r} is a rate (outcomes in [0, 1]), so 0 <= sum <= count and "
                            f"sum_sq <= count; got count {count:g}, sum {total:g}, sum_sq {total_sq:g}")
    if len(problems) > before or stats is None or values is None:
        return None
    return SimulatorStat(run, values, metric, *stats)


def _is_rate(spec: ExperimentSpec, metric: str) -> bool:
    return any(m.name == metric and m.kind == "rate" for m in spec.metrics)


def _values(spec: ExperimentSpec, raw: Any, path: str, problems: list[str]) -> tuple[tuple[str, float], ...] | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{path}: must map every parameter ({', '.join(spec.parameter_names)}) to a value, got {raw!r}")
        return None
    before = len(problems)
    unknown = sorted(set(map(str, raw)) - set(spec.parameter_names))
    if unknown:
        problems.append(f"{path}: unknown parameter(s) {unknown} (declared: {', '.join(spec.parameter_names)})")
    out = []
    for p in spec.parameters:
        value = raw.get(p.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"{path}.{p.name}: must be a finite number, got {value!r}")
        elif not p.lower <= value <= p.upper:
            problems.append(f"{path}.{p.name}: {value!r} is outside the bounds [{p.lower:g}, {p.upper:g}]")
        else:
            out.append((p.name, float(value)))
    return tuple(out) if len(problems) == before else None


def parse_simulator_rows(spec: ExperimentSpec, rows: Iterable[Any], *, path: str = "rows") -> list[SimulatorStat]:
    """Validate a whole batch against ``spec``; raise :class:`ObservationValidationError` naming every bad row, or
    return the rows with those of one (run, values, metric) added up."""
    return merge(parse_rows(rows, path=path, parse=partial(parse_simulator_row, spec)), SimulatorStat)
