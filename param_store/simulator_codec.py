"""Simulator statistics <-> fields of the per-experiment simulator hash.

Each (run, parameter values, metric) owns three float fields ``run|metric|name=value,...|n`` (and ``|s``,
``|q``: count, sum, sum of squares) that ``HINCRBYFLOAT`` adds to, as for online rows. The parameter values are
spelled with their names (``repr`` of each float, exact on the way back), so a row still decodes after the
spec's parameters are reordered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from bayesopt.simulator_observations import SIMULATOR_COLUMNS, SimulatorStat
from param_store.keys import FIELD_SEP, STAT_SUFFIXES

if TYPE_CHECKING:
    import pandas as pd

#: Separators inside the values part of a field; parameter names never contain them (``bayesopt.spec.NAME_PATTERN``).
VALUE_SEP, NAME_SEP = ",", "="


def field(stat: SimulatorStat, suffix: str) -> str:
    values = VALUE_SEP.join(f"{name}{NAME_SEP}{value!r}" for name, value in stat.values)
    return FIELD_SEP.join((stat.run, stat.metric, values, suffix))


def increments(stat: SimulatorStat) -> list[tuple[str, float]]:
    """The three (field, amount) pairs that add ``stat`` to the hash."""
    return [(field(stat, suffix), value) for suffix, value in zip(STAT_SUFFIXES, (stat.count, stat.sum, stat.sum_sq), strict=True)]


def decode(fields: Mapping[bytes, bytes], parameter_names: list[str]) -> pd.DataFrame:
    """A frame of :data:`SIMULATOR_COLUMNS` plus ``x.<name>`` per parameter, sorted by run, metric, values.

    Rows stored under other parameter names than ``parameter_names`` (a spec changed since) are left out.
    """
    import pandas as pd  # serving replicas never read simulator rows back

    from bayesopt.observation_table import param_column

    rows: dict[tuple[str, str, tuple[float, ...]], list[float]] = {}
    position = {suffix: i for i, suffix in enumerate(STAT_SUFFIXES)}
    for raw_field, raw_value in fields.items():
        run, metric, values, suffix = raw_field.decode().split(FIELD_SEP)
        named = dict(part.split(NAME_SEP) for part in values.split(VALUE_SEP))
        if sorted(named) != sorted(parameter_names):
            continue
        key = (run, metric, tuple(float(named[n]) for n in parameter_names))
        rows.setdefault(key, [0.0, 0.0, 0.0])[position[suffix]] = float(raw_value)
    records = [(run, metric, *acc, *values) for (run, metric, values), acc in sorted(rows.items())]
    columns = [*SIMULATOR_COLUMNS, *(param_column(n) for n in parameter_names)]
    frame = pd.DataFrame.from_records(records, columns=columns)
    return frame.astype({c: "float64" for c in columns[2:]})
