"""The observation table that models read: statistics joined with each arm's parameter values (pandas, no torch).

Columns, one row per (window, arm, metric, source):
``window`` (int, the distribution version served), ``arm_id``, ``metric``, ``source``, ``count``, ``mean``,
``std_error`` (of the mean; 0 for a single outcome), and one float column per parameter named ``x.<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bayesopt.errors import ObservationValidationError
from bayesopt.observations import STAT_COLUMNS, VARIANCE_TOLERANCE
from bayesopt.spec import ExperimentSpec

PARAM_PREFIX = "x."
TABLE_COLUMNS = ("window", "arm_id", "metric", "source", "count", "mean", "std_error")
#: Problems listed one by one by :func:`stats_problems` before the rest are summarised as "... and N more".
MAX_LISTED_PROBLEMS = 20


def param_column(name: str) -> str:
    """Column of the table that holds parameter ``name``."""
    return PARAM_PREFIX + name


def empty_stats() -> pd.DataFrame:
    """A statistics frame with no rows and the right columns."""
    return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("count", "sum", "sum_sq") else "object") for c in STAT_COLUMNS})


def stats_problems(stats: pd.DataFrame) -> list[str]:
    """Rows of a statistics frame (columns :data:`STAT_COLUMNS`) that no model may be fitted on.

    The same rules :func:`bayesopt.observations.parse_row` applies to new rows, for statistics read back from
    storage (which some other writer may have changed): the count must be a positive finite number, the sums
    finite, and ``sum_sq`` at least ``sum**2 / count`` (a variance cannot be negative). Each problem names its
    row; past :data:`MAX_LISTED_PROBLEMS` the rest are counted.
    """
    if stats.empty:
        return []
    count = stats["count"].to_numpy(dtype=float)
    total = stats["sum"].to_numpy(dtype=float)
    total_sq = stats["sum_sq"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        floor = np.where(count > 0, total * total / count, 0.0)
        negative_var = total_sq < floor - VARIANCE_TOLERANCE * np.maximum(1.0, np.abs(floor))
    bad_count = ~np.isfinite(count) | (count <= 0)
    bad_sums = ~np.isfinite(total) | ~np.isfinite(total_sq)
    out: list[str] = []
    for i in np.flatnonzero(bad_count | bad_sums | negative_var):
        row = stats.iloc[i]
        where = f"version {row['version']}, arm {row['arm_id']}, metric {row['metric']}, source {row['source']}"
        if bad_count[i]:
            out.append(f"{where}: count is {float(count[i])} (must be a positive finite number)")
        elif bad_sums[i]:
            out.append(f"{where}: sum {float(total[i])} and sum_sq {float(total_sq[i])} must be finite")
        else:
            out.append(f"{where}: sum_sq {float(total_sq[i]):.6g} is below sum**2/count {float(floor[i]):.6g} (a negative variance)")
    if len(out) > MAX_LISTED_PROBLEMS:
        out = out[:MAX_LISTED_PROBLEMS] + [f"... and {len(out) - MAX_LISTED_PROBLEMS} more rows with problems"]
    return out


def observation_table(
    spec: ExperimentSpec, stats: pd.DataFrame, arm_values: Mapping[str, Mapping[str, float]]
) -> pd.DataFrame:
    """Join sufficient statistics (columns :data:`STAT_COLUMNS`) with arm values into the model table.

    ``arm_values`` maps every arm id in ``stats`` to its parameter values (from the distributions it was
    served in). Raises :class:`ObservationValidationError` naming arms whose values are unknown.
    """
    missing = sorted(set(stats["arm_id"]) - set(arm_values)) if len(stats) else []
    if missing:
        raise ObservationValidationError([f"arm_id: no parameter values known for arm {a!r}" for a in missing])
    count, mean, std_error = _moments(stats)
    table = pd.DataFrame(
        {
            "window": stats["version"].astype(int).to_numpy(),
            "arm_id": stats["arm_id"].astype(str).to_numpy(),
            "metric": stats["metric"].astype(str).to_numpy(),
            "source": stats["source"].astype(str).to_numpy(),
            "count": count,
            "mean": mean,
            "std_error": std_error,
        }
    )
    arms = pd.unique(table["arm_id"])  # one lookup per arm, not per row
    arm_index = pd.Index(arms).get_indexer(table["arm_id"])
    for p in spec.parameters:
        table[param_column(p.name)] = np.array([float(arm_values[a][p.name]) for a in arms], dtype=float)[arm_index]
    return table.sort_values(["window", "metric", "arm_id", "source"], kind="stable").reset_index(drop=True)


def _moments(stats: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` counts, means and standard errors of the mean from ``count``, ``sum`` and ``sum_sq`` columns."""
    count = stats["count"].astype(float).to_numpy()
    total = stats["sum"].astype(float).to_numpy()
    total_sq = stats["sum_sq"].astype(float).to_numpy()
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    var = np.where(count > 1, (total_sq - total * mean) / np.maximum(count - 1, 1), 0.0)
    return count, mean, np.sqrt(np.maximum(var, 0.0) / np.maximum(count, 1))


def simulator_table(spec: ExperimentSpec, sim: pd.DataFrame) -> pd.DataFrame:
    """Simulator statistics (``param_store``'s simulator frame) as model-table rows with ``source`` ``simulation``.

    Simulator rows have no served window: ``window`` is 0 and ``arm_id`` holds the simulator run. Every metric's
    rows are kept; the models use those of ``spec.simulator_metrics`` and report the others as ignored.
    """
    count, mean, std_error = _moments(sim)
    table = pd.DataFrame({"window": np.zeros(len(sim), dtype=int), "arm_id": sim["run"].astype(str).to_numpy(),
                          "metric": sim["metric"].astype(str).to_numpy(), "source": "simulation",
                          "count": count, "mean": mean, "std_error": std_error})
    for name in spec.parameter_names:
        table[param_column(name)] = sim[param_column(name)].to_numpy(float)
    return table
