"""Experiment lifecycle commands: launch, status, history, rollback, pause, resume, end."""

from __future__ import annotations

import argparse
from typing import Any

from bayesopt.distribution import ParameterDistribution
from bayesopt.errors import ValidationError
from jobs.commands import ExitCode, add_json_flag, iso_time, print_json, seconds
from jobs.commands.analysts import add_ax_launch_flags, launch_from_ax_args
from jobs.settings import Settings
from param_store import ExperimentState, ParamStore

#: Refit records shown per experiment by ``bayesopt status``.
STATUS_RUNS = 5
#: The refit's stages in pipeline order, for showing a run's timings (others follow; ``total`` is the duration).
STAGE_ORDER = ("load", "import", "policy", "fit", "sample", "validate", "publish")
NAME_HELP = "experiment name (as in its spec)"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the lifecycle commands to the ``bayesopt`` subcommands."""
    p = sub.add_parser("launch", help="validate a spec (YAML/JSON) or an Ax experiment, store it and publish version 1")
    p.add_argument("spec", nargs="?", help="path to the experiment spec (.yaml, .yml or .json)")
    add_ax_launch_flags(p)
    add_json_flag(p, "the published distribution")
    p.set_defaults(handler=cmd_launch)

    p = sub.add_parser("status", help="state, current distribution and recent refits of one or all experiments")
    p.add_argument("name", nargs="?", help="experiment name (default: every experiment)")
    add_json_flag(p, "the status (one object with NAME, else a list)")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("history", help="published versions of an experiment, oldest first")
    p.add_argument("name", help=NAME_HELP)
    add_json_flag(p, "the versions")
    p.set_defaults(handler=cmd_history)

    p = sub.add_parser("rollback", help="publish a new version repeating an earlier one")
    p.add_argument("name", help=NAME_HELP)
    p.add_argument("version", type=int, help="the earlier version whose arms and weights to publish again")
    add_json_flag(p, "the new version")
    p.set_defaults(handler=cmd_rollback)

    for verb, target in (("pause", "paused"), ("resume", "running"), ("end", "ended")):
        p = sub.add_parser(verb, help=f"move an experiment to {target}")
        p.add_argument("name", help=NAME_HELP)
        add_json_flag(p, "the new state")
        p.set_defaults(handler=cmd_transition, target=ExperimentState(target))


def format_distribution(dist: ParameterDistribution, indent: str = "") -> str:
    """A table of arms (heaviest first) with their weights and values, under a line naming the version."""
    names = sorted({k for a in dist.arms for k in a.values})
    lines = [f"{indent}{dist.experiment} version {dist.version} (created {iso_time(dist.created_at)}, spec {dist.spec_hash})"]
    if dist.source_version is not None:
        lines[0] += f", rollback of version {dist.source_version}"
    lines.append(f"{indent}  {'arm':<14}{'weight':>8}  " + "  ".join(f"{n:>12}" for n in names))
    for arm in sorted(dist.arms, key=lambda a: -a.weight):
        vals = "  ".join(f"{arm.values[n]:>12.4g}" for n in names)
        lines.append(f"{indent}  {arm.arm_id:<14}{arm.weight:>8.3f}  {vals}")
    return "\n".join(lines)


def format_simulator_models(dist: ParameterDistribution, indent: str = "") -> list[str]:
    """Per metric with simulator data: the model used and why, the learned correlation, the estimated bias."""
    lines = []
    for metric, summary in (dist.diagnostics.get("models") or {}).items():
        sim = summary.get("simulator") if isinstance(summary, dict) else None
        if not isinstance(sim, dict):
            continue
        text = f"{indent}  {metric}: {sim.get('model')} model ({sim.get('reason')})"
        if sim.get("correlation") is not None:
            bias = sim.get("bias") or {}
            text += f"; correlation {sim['correlation']:.2f}"
            if bias.get("offset") is not None:
                text += f", simulator offset {bias['offset']:+.4g}"
            if bias.get("effect_scale") is not None:
                text += f", effect scale {bias['effect_scale']:.2f}"
        lines.append(text + f"; {sim.get('simulator_rows', 0)} simulator rows")
    return [f"{indent}simulator:"] + lines if lines else []


def format_run(run: dict[str, Any]) -> str:
    """One refit record as a line: when, outcome, duration, stage timings, data used."""
    status = run.get("status", "?")
    outcome = f"published version {run.get('version')}" if status == "published" else f"{status} {run.get('reason') or ''}".strip()
    duration = run.get("duration_s")
    if duration is None and run.get("ended_at") is not None and run.get("started_at") is not None:
        duration = run["ended_at"] - run["started_at"]
    text = f"{iso_time(run.get('started_at'))}  {outcome} in {seconds(duration)}"
    timings = {k: v for k, v in (run.get("timings") or {}).items() if k != "total"}
    if timings:
        def order(stage: str) -> tuple[int, str]:
            head = stage.split(".")[0]
            return (STAGE_ORDER.index(head) if head in STAGE_ORDER else len(STAGE_ORDER), stage)

        text += " (" + ", ".join(f"{stage} {seconds(timings[stage])}" for stage in sorted(timings, key=order)) + ")"
    if run.get("observation_count"):
        text += f", {run['observation_count']:,.0f} outcomes"
    if run.get("message"):
        text += f": {run['message']}"
    return text


def cmd_launch(args: argparse.Namespace, settings: Settings) -> int:
    """Launch the spec at ``args.spec`` and show version 1."""
    from param_store.launch import launch_experiment

    if (args.spec is None) == (args.from_ax is None):
        raise ValidationError("launch: give a spec file or --from-ax FILE (one of them)", what="arguments")
    if args.from_ax is not None:
        dist = launch_from_ax_args(settings.open_store(), args)
    else:
        dist = launch_experiment(settings.open_store(), args.spec)
    if args.json:
        print_json(dist.to_dict())
    else:
        print(format_distribution(dist))
    return ExitCode.OK


def status_document(store: ParamStore, name: str) -> dict[str, Any]:
    """State, current version and its distribution, and the newest refit records of ``name``."""
    version = store.current_version(name)
    doc = {"name": name, "state": store.state(name).value, "current_version": version,
           "recent_runs": store.runs(name, STATUS_RUNS)}
    if version is not None:
        doc["distribution"] = store.load_version(name, version).to_dict()
    return doc


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Show one experiment (unknown: exit 2) or all of them."""
    store = settings.open_store()
    names = [args.name] if args.name else store.list_experiments()
    docs = [status_document(store, n) for n in names]
    if args.json:
        print_json(docs[0] if args.name else docs)
        return ExitCode.OK
    if not docs:
        print("no experiments")
    for i, doc in enumerate(docs):
        if i:
            print()
        print(f"{doc['name']}: {doc['state']}, current version {doc['current_version']}")
        if "distribution" in doc:
            dist = ParameterDistribution.from_dict(doc["distribution"])
            print(format_distribution(dist, indent="  "))
            for line in format_simulator_models(dist, indent="  "):
                print(line)
        if doc["recent_runs"]:
            print("  recent refits, newest first:")
            for run in doc["recent_runs"]:
                print("    " + format_run(run))
    return ExitCode.OK


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    """List every activation of an experiment, oldest first."""
    store = settings.open_store()
    rows = []
    for version, at in store.history(args.name):
        dist = store.load_version(args.name, version)
        rows.append({"version": version, "activated_at": at, "arms": len(dist.arms), "source_version": dist.source_version})
    if args.json:
        print_json(rows)
        return ExitCode.OK
    print(f"{'version':>8}  {'activated':<20}  arms")
    for r in rows:
        extra = f"  rollback of version {r['source_version']}" if r["source_version"] is not None else ""
        print(f"{r['version']:>8}  {iso_time(r['activated_at']):<20}  {r['arms']:>4}{extra}")
    return ExitCode.OK


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    """Publish the content of ``args.version`` as a new version."""
    dist = settings.open_store().rollback(args.name, args.version)
    if args.json:
        print_json({"experiment": args.name, "version": dist.version, "source_version": args.version})
    else:
        print(f"{args.name}: published version {dist.version} with the content of version {args.version}")
    return ExitCode.OK


def cmd_transition(args: argparse.Namespace, settings: Settings) -> int:
    """Pause, resume or end an experiment."""
    state = settings.open_store().transition(args.name, args.target)
    if args.json:
        print_json({"experiment": args.name, "state": state.value})
    else:
        print(f"{args.name}: {state.value}")
    return ExitCode.OK
