"""``bayesopt bench NAME [ARGS...]``: run a benchmark from ``simulations/bench_<NAME>.py``; each writes JSON."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import simulations
from jobs.settings import Settings

PREFIX = "bench_"


def available() -> list[str]:
    """Benchmark names: the ``bench_<NAME>`` modules of :mod:`simulations`, listed without importing them."""
    return sorted(m.name[len(PREFIX):] for m in pkgutil.iter_modules(simulations.__path__) if m.name.startswith(PREFIX))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the ``bayesopt`` subcommands."""
    p = sub.add_parser("bench", help="run a benchmark (writes JSON); see 'bayesopt bench NAME --help'")
    p.add_argument("name", choices=available(), help="which benchmark: %(choices)s")
    p.add_argument("args", nargs=argparse.REMAINDER,
                   help="arguments passed to the benchmark (its own --help lists them; --out sets the JSON file)")
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Run the benchmark's ``main(argv)``; its result is the exit code."""
    module = importlib.import_module(f"simulations.{PREFIX}{args.name}")
    return int(module.main(args.args) or 0)
