"""``bayesopt simulate``: closed-loop runs of any policies and seeds, and the multi-seed table.

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


def policy_list(text: str) -> list[str]:
    """``all`` or a comma-separated list of policy names."""
    names = list(POLICIES) if text.strip() == "all" else [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown policy {', '.join(unknown) or text!r}; choose from "
                                         f"{', '.join(POLICIES)} or all")
    return names


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


def add_loop_arguments(p: argparse.ArgumentParser, *, hours: int, members: float, num_draws: int | None,
                       num_candidates: int | None) -> None:
    """Flags shared with ``bayesopt demo``."""
    p.add_argument("--hours", type=int, default=hours, help="simulated hours per run (default %(default)s)")
    p.add_argument("--members-per-hour", type=float, default=members,
                   help="mean members (sessions) per simulated hour; the time of day swings it +-50%% (default %(default)s)")
    p.add_argument("--num-draws", type=int, default=num_draws,
                   help="Thompson draws per refit, spec.policy.num_draws (default %(default)s)")
    p.add_argument("--num-candidates", type=int, default=num_candidates,
                   help="candidate points per refit, spec.policy.num_candidates (default %(default)s)")
    p.add_argument("--max-arms", type=int, default=None, help="spec.policy.max_arms (default: the world spec's 12)")
    p.add_argument("--num-parameters", type=int, default=2, help="tuned weights of the world (2 to 6, default 2)")
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
        "JSON summary. Finished runs found in --out are reused, so an interrupted study resumes.",
    )
    p.add_argument("--policy", type=policy_list, default=["gp"],
                   help=f"policy, comma-separated policies, or all ({', '.join(POLICIES)}; default gp)")
    p.add_argument("--seeds", type=seed_list, default=[0], help="N (seeds 0..N-1), a-b, or a,b,c (default 1: seed 0)")
    add_loop_arguments(p, hours=48, members=30000.0, num_draws=1000, num_candidates=256)
    p.add_argument("--ax-max-trials", type=int, default=None,
                   help="arms Ax suggests per hour (default: max_arms - 1); fewer makes the ax baseline faster")
    p.add_argument("--workers", type=int, default=1, help="runs in parallel, one process each (default 1)")
    p.add_argument("--threads-per-worker", type=int, default=None, help="torch threads per worker (default CPUs / workers)")
    p.add_argument("--plots-per-run", action="store_true", help="also write each run's own plots (always with one run)")
    add_json_flag(p, "the study summary (study.json)")
    p.set_defaults(handler=cmd_simulate)


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Run the study (resuming finished runs), write its report, print the table (or the summary as JSON)."""
    from simulations.loop import LoopConfig
    from simulations.report import write_run_report
    from simulations.study import run_path, run_study

    out = Path(args.out) if args.out else default_out("simulate")
    base = LoopConfig(hours=args.hours, members_per_hour=args.members_per_hour, num_parameters=args.num_parameters,
                      policy_overrides=policy_overrides(args),
                      baseline_options={"ax": {"max_trials": args.ax_max_trials}} if args.ax_max_trials else {})
    command = "bayesopt " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["simulate"] else ""
    print(f"{len(args.policy)} policies x {len(args.seeds)} seeds, {args.hours} h, ~{args.members_per_hour:g} "
          f"members/h -> {out}", file=sys.stderr if args.json else sys.stdout, flush=True)
    paths = run_study(base, args.policy, args.seeds, out, workers=args.workers,
                      threads_per_worker=args.threads_per_worker, command=command)
    if args.plots_per_run or len(args.policy) * len(args.seeds) == 1:
        for policy in args.policy:
            for seed in args.seeds:
                path = run_path(out, policy, seed)
                if path.exists():
                    write_run_report(json.loads(path.read_text()), out / "runs" / f"{policy}-seed{seed}")
    failed = (out / "failures.txt").exists()
    if args.json:
        print_json(json.loads(paths["study"].read_text()))
    else:
        print(paths["table_md"].read_text())
        print(f"report: {out} (table.md, table.csv, study.json, study.png, runs/)")
    return ExitCode.FAILURE if failed else ExitCode.OK
