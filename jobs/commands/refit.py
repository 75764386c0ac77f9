"""``bayesopt refit NAME|--all`` (one refit now, with progress) and ``bayesopt scheduler`` (refit on schedule)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from jobs.commands import ExitCode, add_json_flag
from jobs.executors import EXECUTOR_KINDS
from jobs.propose import DEFAULT_POLICY
from jobs.refit import DEFAULT_ACTIVATION_DELAY_S, DEFAULT_LOCK_TTL_S, RefitOptions, refit_experiment
from jobs.runs import Reason, RunRecord, RunStatus, outcome_table
from jobs.settings import Settings
from serving.logs import LOG_LEVELS, configure_logging

#: Outcomes that need someone to look: :attr:`ExitCode.FAILURE`. Thin data or a busy period are normal and exit 0.
PROBLEM_REASONS = frozenset({Reason.INVALID_DATA, Reason.FIT_FAILED, Reason.INVALID_DISTRIBUTION, Reason.LOCK_LOST, Reason.ERROR})


def _common(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``refit`` and ``scheduler``."""
    p.add_argument("--policy", default=DEFAULT_POLICY, help="the policy as 'module:Name', a RefitPolicy object or class (default %(default)s)")
    p.add_argument("--period-seconds", type=int, default=None,
                   help="fixed periods of this many seconds instead of each spec's cron (accelerated runs, tests)")
    p.add_argument("--activation-delay", type=float, default=DEFAULT_ACTIVATION_DELAY_S,
                   help="seconds between publishing a version and its valid_from (default %(default)s)")
    p.add_argument("--lock-ttl", type=float, default=DEFAULT_LOCK_TTL_S,
                   help="seconds a crashed refit keeps its period locked (default %(default)s)")


def _executor_flags(p: argparse.ArgumentParser) -> None:
    """Where parallel refits run: ``--executor``, ``--address``, ``--workers``, ``--threads-per-worker``."""
    p.add_argument("--executor", choices=EXECUTOR_KINDS, default="pool",
                   help="the local process pool (default) or Ray tasks (the 'ray' extra)")
    p.add_argument("--address", default=None,
                   help="with --executor ray: a running Ray cluster (ray://host:10001); default: start a local one")
    p.add_argument("--workers", type=int, default=None, help="refits in parallel (default: the CPUs / threads per worker)")
    p.add_argument("--threads-per-worker", type=int, default=None, help="torch threads per refit (default: CPUs / workers)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``refit`` and ``scheduler`` to the ``bayesopt`` subcommands."""
    p = sub.add_parser("refit", help="refit one experiment (or all running ones) now, printing each stage")
    p.add_argument("name", nargs="?", help="experiment name (or give --all)")
    p.add_argument("--all", action="store_true", help="refit every running experiment in parallel (see --executor)")
    _executor_flags(p)
    p.add_argument("--force", action="store_true", help="refit even if spec, data and period are unchanged")
    add_json_flag(p, "each run record (one JSON object per line)")
    _common(p)
    p.set_defaults(handler=cmd_refit)

    p = sub.add_parser("scheduler", help="refit every running experiment on its cron schedule (run one per replica)")
    _executor_flags(p)
    p.add_argument("--sync-seconds", type=float, default=60.0, help="how often to look for launched/paused experiments")
    p.add_argument("--run-for", type=float, default=None, help="stop after this many seconds (default: until signalled)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics (runs, durations, last publish, skips) on 127.0.0.1:PORT/metrics")
    p.add_argument("--log-level", default=None, choices=LOG_LEVELS,
                   help="log level (default $BAYESOPT_LOG_LEVEL, else info)")
    add_json_flag(p, "each run record (one JSON object per line)")
    _common(p)
    p.set_defaults(handler=cmd_scheduler)


def _options(args: argparse.Namespace, **overrides: object) -> RefitOptions:
    return RefitOptions(
        period_seconds=args.period_seconds, activation_delay_s=args.activation_delay, lock_ttl_s=args.lock_ttl,
        **overrides,
    )


def _exit_status(records: list[RunRecord]) -> int:
    bad = [r for r in records if r.status is RunStatus.FAILED or r.reason in PROBLEM_REASONS]
    return ExitCode.FAILURE if bad else ExitCode.OK


def _print_json_record(record: RunRecord) -> None:
    print(json.dumps(record.to_dict(), sort_keys=True), flush=True)


def _print_record(record: RunRecord) -> None:
    print(record.summary())
    for problem in record.problems:
        print(f"  problem: {problem}")


def _progress(stage: str, seconds: float | None, detail: str) -> None:
    if seconds is None:
        print(f"  {stage.strip():<9} ...{'  ' + detail if detail else ''}", flush=True)
    else:
        print(f"  {stage:<9} {seconds:8.3f} s{'  ' + detail if detail else ''}", flush=True)


def cmd_refit(args: argparse.Namespace, settings: Settings) -> int:
    """Refit one experiment (an unknown name exits 2) or every running one; 1 if any run needs a look."""
    if bool(args.name) == bool(args.all):
        print("bayesopt: error: refit: give an experiment NAME or --all", file=sys.stderr)
        return ExitCode.USAGE
    options = _options(args, once_per_period=False, force=args.force)
    if not args.all:  # a bad --policy is bad input (exit 2), not a failed run; the refit imports it anyway
        from jobs.propose import resolve_policy

        resolve_policy(args.policy)
    if args.all:
        return _refit_all(args, settings, options)
    else:
        store = settings.open_store()
        try:
            store.state(args.name)  # an unknown name raises ExperimentNotFoundError: exit 2, from main
        finally:
            store.close()
        if not args.json:
            print(f"refit {args.name}", flush=True)
        progress = None if args.json else _progress
        records = [refit_experiment(settings, None, args.name, policy=args.policy, options=options, progress=progress)]
    for record in records:
        (_print_json_record if args.json else _print_record)(record)
    return _exit_status(records)


def _refit_all(args: argparse.Namespace, settings: Settings, options: RefitOptions) -> int:
    """Every running experiment on the chosen executor: a line as each finishes, then the outcome table."""
    from jobs.executor import bounded_workers
    from jobs.executors import open_executor
    from param_store import ExperimentState

    store = settings.open_store()
    try:
        names = [n for n in store.list_experiments() if store.state(n) is ExperimentState.RUNNING]
    finally:
        store.close()
    workers = min(bounded_workers(args.workers), max(1, len(names))) if args.workers else None
    with open_executor(args.executor, workers, threads_per_worker=args.threads_per_worker, address=args.address) as executor:
        if not args.json:
            print(f"refit {len(names)} running experiments on {executor.kind} "
                  f"({executor.max_workers} at a time, {executor.threads_per_worker} threads each)", flush=True)
        on_record = None if args.json else _print_progress
        records = executor.refit_all(settings, None, names, policy=args.policy, options=options, on_record=on_record)
    if args.json:
        for record in records:
            _print_json_record(record)
    else:
        print(outcome_table(records))
    return _exit_status(records)


def _print_progress(record: RunRecord, done: int, total: int) -> None:
    print(f"[{done}/{total}] {record.summary()}", flush=True)


def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    """Refit on each experiment's cron until signalled (or ``--run-for`` seconds)."""
    from jobs.scheduler import RefitScheduler

    configure_logging(args.log_level or settings.environment.log_level, settings.environment.log_format)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    from jobs.metrics import SchedulerMetrics

    metrics = SchedulerMetrics()
    if args.metrics_port is not None:
        metrics.serve(args.metrics_port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from jobs.executors import open_executor

    executor = open_executor(args.executor, args.workers, threads_per_worker=args.threads_per_worker, address=args.address)
    scheduler = RefitScheduler(
        settings, None, pool=executor,
        policy=args.policy, options=_options(args),
        sync_seconds=args.sync_seconds, on_record=_print_json_record if args.json else _print_record, metrics=metrics,
    )
    scheduler.start()
    if not args.json:
        print(f"scheduler ready: {len(scheduler.scheduled())} running experiments, {scheduler.pool.max_workers} workers "
              f"({scheduler.pool.kind})",
              flush=True)
    try:
        stop.wait(args.run_for)
    finally:
        scheduler.shutdown(wait=True)
    if not args.json:
        print("scheduler stopped", flush=True)
    return ExitCode.OK
