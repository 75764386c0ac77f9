"""Experiment lifecycle commands: launch, status, history, rollback, pause, resume, end."""

from __future__ import annotations

import argparse
import json
import time

from bayesopt.distribution import ParameterDistribution
from jobs.settings import Settings
from param_store import ExperimentState, ParamStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("launch", help="validate a spec (YAML/JSON), store it and publish version 1")
    p.add_argument("spec", help="path to the experiment spec")
    p.add_argument("--json", action="store_true", help="print the distribution as JSON")
    p.set_defaults(handler=cmd_launch)

    p = sub.add_parser("status", help="state, current distribution and recent refits of one or all experiments")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("history", help="published versions of an experiment, oldest first")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_history)

    p = sub.add_parser("rollback", help="publish a new version repeating an earlier one")
    p.add_argument("name")
    p.add_argument("version", type=int)
    p.set_defaults(handler=cmd_rollback)

    for verb, target in (("pause", "paused"), ("resume", "running"), ("end", "ended")):
        p = sub.add_parser(verb, help=f"move an experiment to {target}")
        p.add_argument("name")
        p.set_defaults(handler=cmd_transition, target=ExperimentState(target))


def format_distribution(dist: ParameterDistribution) -> str:
    """A human-readable table of arms, weights and values."""
    names = sorted({k for a in dist.arms for k in a.values})
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(dist.created_at))
    lines = [f"{dist.experiment} version {dist.version} (created {when} UTC, spec {dist.spec_hash})"]
    if dist.source_version is not None:
        lines[0] += f", rollback of version {dist.source_version}"
    header = f"  {'arm':<14}{'weight':>8}  " + "  ".join(f"{n:>12}" for n in names)
    lines.append(header)
    for arm in sorted(dist.arms, key=lambda a: -a.weight):
        vals = "  ".join(f"{arm.values[n]:>12.4g}" for n in names)
        lines.append(f"  {arm.arm_id:<14}{arm.weight:>8.3f}  {vals}")
    return "\n".join(lines)


def cmd_launch(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.launch import launch_experiment  # loads scipy; other commands start without it

    store = settings.open_store()
    dist = launch_experiment(store, args.spec)
    print(dist.to_json() if args.json else format_distribution(dist))
    return 0


def _status_doc(store: ParamStore, name: str) -> dict:
    version = store.current_version(name)
    doc = {"name": name, "state": store.state(name).value, "current_version": version, "recent_runs": store.runs(name, 5)}
    if version is not None:
        doc["distribution"] = store.load_version(name, version).to_dict()
    return doc


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    store = settings.open_store()
    names = [args.name] if args.name else store.list_experiments()
    docs = [_status_doc(store, n) for n in names]
    if args.json:
        print(json.dumps(docs if not args.name else docs[0], indent=2))
        return 0
    if not docs:
        print("no experiments")
    for doc in docs:
        print(f"{doc['name']}: {doc['state']}, current version {doc['current_version']}")
        if "distribution" in doc:
            print(format_distribution(ParameterDistribution.from_dict(doc["distribution"])))
        for run in doc["recent_runs"]:
            print("  refit " + ", ".join(f"{k}={v}" for k, v in sorted(run.items()) if k != "experiment"))
    return 0


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    store = settings.open_store()
    rows = []
    for version, at in store.history(args.name):
        dist = store.load_version(args.name, version)
        rows.append({"version": version, "activated_at": at, "arms": len(dist.arms), "source_version": dist.source_version})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["activated_at"]))
        extra = f"  rollback of {r['source_version']}" if r["source_version"] is not None else ""
        print(f"  v{r['version']:<5} {when} UTC  {r['arms']} arms{extra}")
    return 0


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    dist = settings.open_store().rollback(args.name, args.version)
    print(f"{args.name}: published version {dist.version} with the content of version {args.version}")
    return 0


def cmd_transition(args: argparse.Namespace, settings: Settings) -> int:
    state = settings.open_store().transition(args.name, args.target)
    print(f"{args.name}: {state.value}")
    return 0
