"""The ``bayesopt`` commands: each module's ``register(subparsers)`` adds subcommands whose handler is
``fn(args, settings) -> int``, returning a code of :class:`ExitCode`.

Other packages add commands through the ``bayesopt.commands`` entry-point group (see :mod:`jobs.cli`); they use
the same exit codes and the helpers below.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """The exit codes of every ``bayesopt`` command."""

    #: It did what was asked (a refit that kept the current version for thin data included).
    OK = 0
    #: Something failed that input cannot fix: the store is unreachable, a refit found broken data, a bug.
    FAILURE = 1
    #: Bad input: an invalid spec or flag, an unknown experiment or version, a disallowed transition.
    USAGE = 2


def add_json_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--json``: print ``what`` as JSON on stdout instead of text."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON instead of text")


def print_json(doc: Any) -> None:
    """One JSON document on stdout (sorted keys, indented)."""
    print(json.dumps(doc, indent=2, sort_keys=True))


def iso_time(epoch_s: float | None) -> str:
    """Epoch seconds as an ISO 8601 UTC time to the second (``2024-05-01T13:00:00Z``); ``-`` for None."""
    if epoch_s is None or not math.isfinite(epoch_s):
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def seconds(value: float | None) -> str:
    """A duration rounded for people: ``0.042 s``, ``3.1 s``, ``95 s``."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.3f} s"
    return f"{value:.1f} s" if value < 60 else f"{value:.0f} s"
