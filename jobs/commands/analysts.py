"""The analysts' commands: ``launch --from-ax`` (its flags), ``export-ax``, ``report``, and deciding and shipping:
``pin``, ``freeze``, ``unfreeze``, ``ship`` (see :mod:`param_store.decisions`)."""

from __future__ import annotations

import argparse
from typing import Any

from bayesopt.errors import ValidationError
from jobs.commands import ExitCode, add_json_flag, iso_time, print_json
from jobs.settings import Settings

NAME_HELP = "experiment name (as in its spec)"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export-ax`` and ``report`` to the ``bayesopt`` subcommands."""
    p = sub.add_parser("export-ax", help="write an experiment's history as an Ax experiment (Client JSON)")
    p.add_argument("name", help=NAME_HELP)
    p.add_argument("--out", required=True, help="the JSON file to write (Client.load_from_json_file reads it)")
    p.set_defaults(handler=cmd_export_ax)

    p = sub.add_parser("report", help="impact so far: lifts per window and combined, cumulative gain, sample ratio")
    p.add_argument("name", help=NAME_HELP)
    p.add_argument("--confidence", type=float, default=0.95, help="of every interval (default 0.95)")
    add_json_flag(p, "the report")
    p.set_defaults(handler=cmd_report)

    for verb, help_text in (("pin", "serve one arm to everyone (a new version) and freeze"),
                            ("ship", "end the experiment serving one arm, with the report stored beside it")):
        p = sub.add_parser(verb, help=help_text)
        p.add_argument("name", help=NAME_HELP)
        p.add_argument("arm_id", help="an arm the experiment served (see bayesopt report)")
        p.add_argument("--reason", default="", help="why (kept with the decision)")
        add_json_flag(p, "the decision")
        p.set_defaults(handler=cmd_decision, verb=verb)
    for verb, help_text in (("freeze", "keep serving the current version; refits skip"),
                            ("unfreeze", "let refits publish again")):
        p = sub.add_parser(verb, help=help_text)
        p.add_argument("name", help=NAME_HELP)
        if verb == "freeze":
            p.add_argument("--reason", default="", help="why (kept with the freeze)")
        add_json_flag(p, "the new state")
        p.set_defaults(handler=cmd_freeze, verb=verb)


def add_ax_launch_flags(p: argparse.ArgumentParser) -> None:
    """``launch``'s flags for an experiment configured in Ax."""
    p.add_argument("--from-ax", metavar="FILE", help="launch the Ax experiment saved in FILE (Client.save_to_json_file "
                   "or ax.storage.json_store.save.save_experiment) instead of a spec")
    p.add_argument("--name", help="with --from-ax: the experiment's name (default: the Ax experiment's)")
    p.add_argument("--metric-kind", action="append", default=[], metavar="METRIC=KIND",
                   help="with --from-ax: a metric's kind, rate or mean (repeatable; default: as stored, else mean)")


def launch_from_ax_args(store: Any, args: argparse.Namespace) -> Any:
    """Launch from ``args.from_ax`` with the ``--name`` and ``--metric-kind`` flags; returns version 1."""
    from jobs.ax_io import launch_from_ax

    kinds = {}
    for item in args.metric_kind:
        metric, sep, kind = item.partition("=")
        if not sep or not metric:
            raise ValidationError(f"--metric-kind: expected METRIC=KIND, got {item!r}", what="arguments")
        kinds[metric] = kind
    return launch_from_ax(store, args.from_ax, name=args.name, metric_kinds=kinds)


def cmd_export_ax(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.ax_io import export_ax

    client = export_ax(settings.open_store(), args.name, args.out)
    print(f"{args.name}: wrote {len(client._experiment.trials)} batch trials to {args.out}")  # noqa: SLF001
    return ExitCode.OK


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from param_store.reports import experiment_report

    if not 0 < args.confidence < 1:
        raise ValidationError(f"--confidence: must be in (0, 1), got {args.confidence}", what="arguments")
    doc = experiment_report(settings.open_store(), args.name, confidence=args.confidence)
    if args.json:
        print_json(doc)
    else:
        print(format_report(doc))
    return ExitCode.OK


def _interval(est: dict[str, Any], percent: bool = False) -> str:
    if est.get("value") is None:
        return "-"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    return f"{est['value'] * scale:+.3g}{unit} [{est['lower'] * scale:+.3g}, {est['upper'] * scale:+.3g}]"


def format_report(doc: dict[str, Any]) -> str:
    """The report for people: combined lifts, guardrails, gain, sample ratio, then one line per window."""
    level = f"{doc['confidence']:.0%}"
    lines = [f"{doc['experiment']}: {doc['state']}, current version {doc['current_version']}, "
             f"{len(doc['windows'])} windows ({level} intervals, stratified by window)"]
    lines.append("served mix against control:")
    for metric, lift in doc["combined"]["mix"].items():
        gain = doc["cumulative_gain"].get(metric, {})
        lines.append(f"  {metric:<16} lift {_interval(lift['relative_lift'], True):<34} cumulative gain {_interval(gain)}")
    for g in doc["guardrails"]:
        limit = f"{g['limit']:+.3g}{' relative' if g['relative'] else ''}"
        lines.append(f"  guardrail {g['metric']} (limit {limit}): {g['status']}")
    srm = doc["sample_ratio"]
    p = "-" if srm["p_value"] is None else f"{srm['p_value']:.3g}"
    verdict = "ok" if srm["ok"] else f"FAILED (versions {srm['flagged_versions']}): fix the assignment before trusting any lift"
    lines.append(f"sample ratio: chi2 {srm['chi2']:.1f} on {srm['df']} df, p = {p}: {verdict}")
    lines.append("arms against control (combined over the windows each was served in):")
    for arm, a in sorted(doc["combined"]["arms"].items()):
        lifts = ", ".join(f"{m} {_interval(v['relative_lift'], True)}" for m, v in a["metrics"].items())
        lines.append(f"  {arm:<14} {a['windows']:>3} windows  {lifts}")
    lines.append("windows:")
    for w in doc["windows"]:
        lifts = ", ".join(f"{m} {_interval(v['relative_lift'], True)}" for m, v in w["mix"].items())
        lines.append(f"  v{w['version']:<4} {iso_time(w['activated_at'])}  {w['members']:>8.0f} members  {lifts}")
    return "\n".join(lines)


def cmd_decision(args: argparse.Namespace, settings: Settings) -> int:
    """``pin`` or ``ship``."""
    from param_store import decisions

    store = settings.open_store()
    if args.verb == "pin":
        dist = decisions.pin(store, args.name, args.arm_id, reason=args.reason, by="cli")
        doc = {"experiment": args.name, "version": dist.version, "arm_id": args.arm_id, "frozen": True}
        text = f"{args.name}: version {dist.version} serves {args.arm_id} to everyone; frozen (unfreeze to refit)"
    else:
        doc = {"experiment": args.name, **decisions.ship(store, args.name, args.arm_id, reason=args.reason, by="cli")}
        text = f"{args.name}: shipped {args.arm_id} (version {doc['version']}), ended; the report is kept with it"
    if args.json:
        print_json(doc)
    else:
        print(text)
    return ExitCode.OK


def cmd_freeze(args: argparse.Namespace, settings: Settings) -> int:
    from param_store import decisions

    store = settings.open_store()
    if args.verb == "freeze":
        decisions.freeze(store, args.name, reason=args.reason, by="cli")
    else:
        decisions.unfreeze(store, args.name)
    doc = {"experiment": args.name, "frozen": args.verb == "freeze", "current_version": store.current_version(args.name)}
    if args.json:
        print_json(doc)
    else:
        print(f"{args.name}: {'frozen at' if doc['frozen'] else 'unfrozen, refits resume from'} version {doc['current_version']}")
    return ExitCode.OK
