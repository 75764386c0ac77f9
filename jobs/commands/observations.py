"""``bayesopt observations load FILE --experiment NAME [--source online|simulation]``: a bulk loader.

A CSV or Parquet file (read with pandas) becomes one batch, validated whole and stored in one transaction:
a bad row refuses the file, naming the row (``rows[i]``, counting data rows from 0) and the field.

Simulator files have columns ``run``, ``metric``, the statistics (``count``/``sum``/``sum_sq``,
``count``/``mean``/``std_error``, or ``value``) and one column per parameter, named ``<name>`` or ``x.<name>``.
Online files have ``version``, ``arm_id``, ``metric`` and the statistics.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from bayesopt.errors import ObservationValidationError
from bayesopt.observation_table import PARAM_PREFIX
from bayesopt.observations import SOURCES
from bayesopt.simulator_observations import SIMULATION
from jobs.commands import ExitCode, add_json_flag, print_json
from jobs.settings import Settings

#: Columns that are statistics or keys, never parameters.
ROW_COLUMNS = frozenset({"run", "metric", "source", "version", "arm_id", "count", "sum", "sum_sq", "mean", "std_error", "value"})


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``observations load``."""
    p = sub.add_parser("observations", help="bulk-load observation rows from a file")
    verbs = p.add_subparsers(dest="verb", required=True, help="what to do with observations: load")
    load = verbs.add_parser("load", help="load a CSV or Parquet file of rows, all or nothing")
    load.add_argument("file", help="a .csv or .parquet file")
    load.add_argument("--experiment", required=True, help="experiment name (as in its spec)")
    load.add_argument("--source", choices=SOURCES, default="online",
                      help="online rows (version, arm_id) or simulator rows (run, parameter columns)")
    add_json_flag(load, "the count of stored rows")
    load.set_defaults(handler=cmd_load)


def read_frame(path: Path) -> Any:
    """The file as a pandas frame; raises :class:`ObservationValidationError` if it cannot be read."""
    import pandas as pd

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
    except (OSError, ValueError, ImportError) as exc:
        raise ObservationValidationError(f"file {str(path)!r}: cannot be read: {exc}") from None
    raise ObservationValidationError(f"file {str(path)!r}: unknown format (use .csv or .parquet)")


def frame_rows(frame: Any, source: str) -> list[dict[str, Any]]:
    """One row dict per data row; empty cells are left out, so that they read as missing fields."""
    records = frame.to_dict("records")
    out = []
    for record in records:
        row: dict[str, Any] = {}
        params: dict[str, Any] = {}
        for key, value in record.items():
            key = str(key)
            if isinstance(value, float) and math.isnan(value):
                continue
            if hasattr(value, "item"):  # numpy scalars to Python numbers
                value = value.item()
            if source == SIMULATION and key not in ROW_COLUMNS:
                params[key.removeprefix(PARAM_PREFIX)] = value
            else:
                row[key] = value
        if source == SIMULATION:
            row["parameters"] = params
            row.setdefault("source", SIMULATION)
        elif isinstance(row.get("version"), float) and row["version"].is_integer():
            row["version"] = int(row["version"])
        out.append(row)
    return out


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the whole file and store it in one transaction."""
    rows = frame_rows(read_frame(Path(args.file)), args.source)
    store = settings.open_store()
    if args.source == SIMULATION:
        stored = store.add_simulator_observations(args.experiment, rows).accepted
    else:
        stored = store.add_observations(args.experiment, rows)
    if args.json:
        print_json({"experiment": args.experiment, "source": args.source, "accepted": stored})
    else:
        print(f"{args.experiment}: stored {stored} {args.source} row(s) from {args.file}")
    return ExitCode.OK
