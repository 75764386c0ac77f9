"""``bayesopt bench NAME [ARGS...]``: run a benchmark from ``simulations/bench_<NAME>.py``; each writes JSON."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil

from jobs.settings import Settings

PREFIX = "bench_"


def available() -> list[str]:
    """Benchmark names, found without importing ``simulations`` (production code paths never load it)."""
    spec = importlib.util.find_spec("simulations")
    paths = list(spec.submodule_search_locations or []) if spec else []
    return sorted(m.name[len(PREFIX):] for m in pkgutil.iter_modules(paths) if m.name.startswith(PREFIX))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark (writes JSON); see 'bayesopt bench NAME --help'")
    p.add_argument("name", choices=available(), help="which benchmark")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    module = importlib.import_module(f"simulations.{PREFIX}{args.name}")
    return int(module.main(args.args) or 0)
