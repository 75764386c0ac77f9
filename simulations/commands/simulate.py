"""``bayesopt simulate``: closed-loop runs of any policies and seeds, and the multi-seed table.

``bayesopt simulate --study`` runs issue 12's study instead: per world variant (``--variant``), policies x world
seeds x sampler streams, every policy paired with ``gp``, the goals as pass/fail rows (``simulations/study.py``).

Each run drives the real system (its own embedded Redis, the serving app over HTTP, the refit job) through a
synthetic ranking world; see ``simulations/loop.py`` and ``docs/closed_loop.md``. Heavy imports (simulations,
torch) happen inside the handler: building the CLI parser stays light.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from jobs.commands import ExitCode, add_json_flag, print_json
from jobs.settings import Settings

#: Kept in step with ``simulations.loop.POLICY_NAMES`` (not imported here: the parser must stay light).
POLICIES = ("gp", "gp_loose", "utility", "uniform", "ab_grid", "arm_ts", "ax")
#: Kept in step with ``simulations.offline_simulator.SIMULATOR_PRESETS``.
SIMULATORS = ("good", "biased", "useless")
#: Kept in step with ``simulations.world.WORLD_VARIANTS``.
VARIANTS = ("base", "scarce", "d4", "d6", "shift")


def _names(text: str, known: list[str], what: str) -> list[str]:
    """``all`` or a comma-separated list of names from ``known``; an unknown one is a usage error naming it."""
    names = list(known) if text.strip() == "all" else [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or text!r}; choose from "
                                         f"{', '.join(known)} or all")
    return names


def variant_list(text: str) -> list[str]:
    """``all`` or a comma-separated list of world variants."""
    return _names(text, list(VARIANTS), "variant")


def policy_list(text: str) -> list[str]:
    """``all`` or a comma-separated list of policy names."""
    return _names(text, list(POLICIES), "policy")


def seed_list(text: str) -> list[int]:
    """``N`` (seeds 0..N-1), ``a-b`` (inclusive) or a comma-separated list."""
    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        if "-" in text.strip()[1:]:
            a, b = text.split("-", 1)
            return list(range(int(a), int(b) + 1))
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds: give N, a-b or a,b,c; got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"seeds: N must be at least 1, got {n}")
    return list(range(n))


def policy_streams(text: str) -> tuple[str, list[int]]:
    """``POLICY=STREAMS``: one policy's sampler streams (``N``, ``a-b`` or ``a,b,c``)."""
    name, sep, streams = text.partition("=")
    if not sep or name.strip() not in POLICIES:
        raise argparse.ArgumentTypeError(f"give POLICY=STREAMS with POLICY one of {', '.join(POLICIES)}; got {text!r}")
    return name.strip(), seed_list(streams)


def add_loop_arguments(p: argparse.ArgumentParser, *, hours: int, members: float | None, num_draws: int | None,
                       num_candidates: int | None, num_parameters: int | None = 2) -> None:
    """Flags shared with ``bayesopt demo``; ``members`` and ``num_parameters`` None: the variant's."""
    p.add_argument("--hours", type=int, default=hours, help="simulated hours per run (default %(default)s)")
    p.add_argument("--members-per-hour", type=float, default=members,
                   help="mean members (sessions) per simulated hour; the time of day swings it +-50%% (default "
                   + ("%(default)s)" if members is not None else "the variant's: 5,000 for scarce, else 30,000)"))
    p.add_argument("--num-draws", type=int, default=num_draws,
                   help="Thompson draws per refit, spec.policy.num_draws (default %(default)s)")
    p.add_argument("--num-candidates", type=int, default=num_candidates,
                   help="candidate points per refit, spec.policy.num_candidates (default %(default)s)")
    p.add_argument("--max-arms", type=int, default=None, help="spec.policy.max_arms (default: the world spec's 12)")
    p.add_argument("--num-parameters", type=int, default=num_parameters,
                   help="tuned weights of the world (2 to 6, default " + (f"{num_parameters})" if num_parameters is not None
                                                                          else "2; a --variant sets its own)"))
    p.add_argument("--out", default=None, help="report folder (default: runs/<UTC timestamp>-<command>)")


def policy_overrides(args: argparse.Namespace) -> dict[str, int]:
    """The spec's policy knobs given on the command line."""
    return {k: v for k, v in (("num_draws", args.num_draws), ("num_candidates", args.num_candidates),
                              ("max_arms", args.max_arms)) if v is not None}


def default_out(command: str) -> Path:
    """``runs/<UTC timestamp>-<command>``."""
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{command}"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``simulate`` to the ``bayesopt`` subcommands."""
    p = sub.add_parser(
        "simulate",
        help="closed-loop runs through the real store, HTTP app and refit job: any policies and seeds, with a table",
        description="Run closed loops of POLICIES x SEEDS on the synthetic ranking world (each run on its own "
        "embedded Redis and serving app) and write per-run JSON, a multi-seed table (markdown, CSV), a plot and a "
        "JSON summary. Finished runs found in --out are reused, so an interrupted study resumes. With --study: "
        "per world variant, policies x world seeds x sampler streams, every policy paired with gp on the same "
        "world seeds (95%% t intervals), the spread across streams, a reliability table of p_feasible and the "
        "goals of issue 12 as pass/fail rows (study.md, study.json).",
    )
    p.add_argument("--policy", type=policy_list, default=None,
                   help=f"policy, comma-separated policies, or all ({', '.join(POLICIES)}; default gp, with --study all)")
    p.add_argument("--seeds", type=seed_list, default=[0],
                   help="world seeds: N (seeds 0..N-1), a-b, or a,b,c (default 1: seed 0)")
    p.add_argument("--streams", type=seed_list, default=None,
                   help="sampler streams (the policy's own draws, spec.policy.seed = seed * 1000 + stream): N, a-b or "
                   "a,b,c (default 1: stream 0; with --study 2)")
    p.add_argument("--baseline-streams", type=seed_list, default=None,
                   help="with --study: streams of every policy but gp (default: --streams); fewer make baselines "
                   "cheaper, and their comparison is then paired on world seeds")
    p.add_argument("--streams-of", type=policy_streams, action="append", default=[], metavar="POLICY=STREAMS",
                   help="with --study: one policy's streams, over --streams/--baseline-streams (repeatable; "
                   "e.g. ax=1 for a slow baseline far behind)")
    p.add_argument("--variant", type=variant_list, default=None,
                   help=f"world variant(s): {', '.join(VARIANTS)}, comma-separated, or all (default: none, the world "
                   "of --num-parameters and --members-per-hour; with --study base); several need --study")
    p.add_argument("--study", action="store_true",
                   help="issue 12's study design: paired comparisons with gp, spread across streams, goals")
    add_loop_arguments(p, hours=48, members=None, num_draws=1000, num_candidates=256, num_parameters=None)
    p.add_argument("--ax-max-trials", type=int, default=None,
                   help="arms Ax suggests per hour (default: max_arms - 1); fewer makes the ax baseline faster")
    p.add_argument("--workers", type=int, default=1, help="runs in parallel, one process each (default 1)")
    p.add_argument("--threads-per-worker", type=int, default=None,
                   help="torch threads per worker (default CPUs / workers; with --study 1)")
    p.add_argument("--simulator", choices=SIMULATORS, default=None,
                   help="store rows of a biased offline simulator for every metric before the first hour (the "
                   "multi-task model uses them where its guard allows): good, biased or useless (default: none)")
    p.add_argument("--simulator-points", type=int, default=500,
                   help="settings the simulator is run at, with --simulator (default %(default)s)")
    p.add_argument("--plots-per-run", action="store_true", help="also write each run's own plots (always with one run)")
    add_json_flag(p, "the study summary (study.json)")
    p.set_defaults(handler=cmd_simulate)


def _usage(message: str) -> int:
    print(f"bayesopt simulate: error: {message}", file=sys.stderr)
    return ExitCode.USAGE


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Run the study (resuming finished runs), write its report, print the table (or the summary as JSON)."""
    from simulations.loop import LoopConfig
    from simulations.report import write_run_report
    from simulations.study import run_path, run_study

    out = Path(args.out) if args.out else default_out("simulate")
    command = "bayesopt " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["simulate"] else ""
    baseline_options = {"ax": {"max_trials": args.ax_max_trials}} if args.ax_max_trials else {}
    if args.study:
        return _cmd_study(args, out, command, baseline_options)
    policies = args.policy or ["gp"]
    streams = args.streams or [0]
    variants = args.variant or [None]
    if len(variants) > 1:
        return _usage("several --variant values need --study")
    if args.baseline_streams is not None or args.streams_of:
        return _usage("--baseline-streams and --streams-of need --study")
    fields = {"hours": args.hours, "policy_overrides": policy_overrides(args), "baseline_options": baseline_options,
              "simulator": args.simulator, "simulator_points": args.simulator_points}
    try:
        if variants[0] is not None:
            if args.members_per_hour is not None:
                fields["members_per_hour"] = args.members_per_hour
            base = LoopConfig.for_variant(variants[0], **fields)
            if args.num_parameters not in (None, base.num_parameters):
                return _usage(f"variant {base.variant} has {base.num_parameters} parameters, not {args.num_parameters}")
        else:
            base = LoopConfig(members_per_hour=args.members_per_hour or 30000.0, num_parameters=args.num_parameters or 2,
                              **fields)
    except ValueError as exc:
        return _usage(str(exc))
    print(f"{len(policies)} policies x {len(args.seeds)} seeds x {len(streams)} streams, {args.hours} h, "
          f"~{base.members_per_hour:g} members/h" + (f", variant {base.variant}" if base.variant else "") + f" -> {out}",
          file=sys.stderr if args.json else sys.stdout, flush=True)
    paths = run_study(base, policies, args.seeds, out, streams=streams, workers=args.workers,
                      threads_per_worker=args.threads_per_worker, command=command)
    if args.plots_per_run or len(policies) * len(args.seeds) * len(streams) == 1:
        for policy in policies:
            for seed in args.seeds:
                for stream in streams:
                    path = run_path(out, policy, seed, stream, base.variant)
                    if path.exists():
                        write_run_report(json.loads(path.read_text()), path.with_suffix(""))
    failed = (out / "failures.txt").exists()
    if args.json:
        print_json(json.loads(paths["study"].read_text()))
    else:
        print(paths["table_md"].read_text())
        print(f"report: {out} (table.md, table.csv, study.json, study.png, runs/)")
    return ExitCode.FAILURE if failed else ExitCode.OK


def _cmd_study(args: argparse.Namespace, out: Path, command: str, baseline_options: dict) -> int:
    """``--study``: the variant study of ``simulations.study.run_variant_study``; prints study.md."""
    from simulations.study import StudyDesign, run_variant_study

    if args.simulator is not None:
        return _usage("--simulator runs without --study (give each simulator its own --out)")
    if args.num_parameters is not None:
        return _usage("--study takes its worlds from --variant (d4 and d6 set 4 and 6 parameters), not --num-parameters")
    try:
        design = StudyDesign(
            variants=tuple(args.variant or ["base"]), policies=tuple(args.policy or POLICIES),
            seeds=tuple(args.seeds), streams=tuple(args.streams or [0, 1]),
            baseline_streams=None if args.baseline_streams is None else tuple(args.baseline_streams),
            policy_streams={name: tuple(streams) for name, streams in args.streams_of} or None,
            hours=args.hours, members_per_hour=args.members_per_hour, policy_overrides=policy_overrides(args),
            baseline_options=baseline_options,
        )
    except ValueError as exc:
        return _usage(str(exc))
    runs = len(design.configs())
    print(f"study: {', '.join(design.variants)} x {len(design.policies)} policies x {len(design.seeds)} world seeds, "
          f"{runs} runs of {args.hours} h -> {out}", file=sys.stderr if args.json else sys.stdout, flush=True)
    result = run_variant_study(design, out, workers=args.workers, threads_per_worker=args.threads_per_worker or 1,
                               command=command)
    if args.json:
        print_json(result["analysis"])
    else:
        print(result["table_md"].read_text())
        print(f"report: {out} (study.md, study.json, study-<variant>.png, runs/<variant>/)")
    return ExitCode.FAILURE if result["failures"] else ExitCode.OK
