"""``bayesopt demo``: the README's main job, on a private embedded redis-server that it starts and stops."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.settings import Settings

EXAMPLE_SPEC = Path(__file__).resolve().parents[2] / "simulations" / "specs" / "feed_example.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="launch the example experiment on a private embedded Redis and show it")
    p.add_argument("--spec", default=str(EXAMPLE_SPEC), help="experiment spec to launch (default: the feed example)")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.commands.experiment import format_distribution
    from jobs.launch import launch_experiment
    from param_store import EmbeddedRedis, ParamStore

    with EmbeddedRedis() as server:
        print(f"embedded redis-server at {server.url}")
        store = ParamStore(server.client(), namespace=settings.namespace)
        dist = launch_experiment(store, args.spec)
        print(format_distribution(dist))
    return 0
