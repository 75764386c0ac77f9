"""``bayesopt serve``: the serving app under gunicorn (the Flask dev server is for tests only).

Settings come from the same reader as the gunicorn entry ``serving.wsgi`` (:class:`serving.config.Environment`,
handed down by the CLI's ``main``); flags given on the command line win over the environment.

Each gunicorn worker builds its own app after the fork (its own Redis connection, cache and watcher threads).
Worker metrics are shared through prometheus-client's multiprocess directory, set up here before anything
imports prometheus-client.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from jobs.settings import Settings
from serving.assignment import DEFAULT_COUPLING_HORIZON, MODES
from serving.config import ServingConfig

DEFAULT_BIND = "127.0.0.1:8000"
#: Two sync workers suit the two-core machines this runs on; raise it with the cores.
DEFAULT_WORKERS = 2
#: A worker silent for this long is restarted by gunicorn.
DEFAULT_TIMEOUT_S = 30
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``bayesopt`` subcommands."""
    p = sub.add_parser("serve", help="run the HTTP API under gunicorn (see docs/serving.md)")
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"host:port to listen on (default {DEFAULT_BIND})")
    p.add_argument("--workers", type=_positive_int, default=DEFAULT_WORKERS, help=f"worker processes (default {DEFAULT_WORKERS})")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="threads per worker; above 1 uses gunicorn's gthread worker (keep-alive) instead of sync")
    p.add_argument("--timeout", type=_positive_int, default=DEFAULT_TIMEOUT_S, help="seconds before a stuck worker is restarted")
    p.add_argument("--poll-interval", type=float, default=None,
                   help="bound on cache staleness in seconds (default $BAYESOPT_POLL_INTERVAL_S, else the store's 5)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="default assignment mode (default $BAYESOPT_ASSIGNMENT_MODE, else epoch)")
    p.add_argument("--coupled", action="append", default=None, metavar="EXPERIMENT",
                   help="serve this experiment in coupled mode (repeatable; replaces $BAYESOPT_COUPLED_EXPERIMENTS)")
    p.add_argument("--coupling-horizon", type=_positive_int, default=None,
                   help=f"versions per coupling block (default {DEFAULT_COUPLING_HORIZON})")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.set_defaults(handler=cmd_serve)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run gunicorn in the foreground until it stops."""
    metrics_dir = settings.environment.metrics_multiprocess_dir
    own_dir = None
    if not metrics_dir:
        metrics_dir = own_dir = tempfile.mkdtemp(prefix="bayesopt-metrics-")
        os.environ[MULTIPROC_ENV] = own_dir  # before prometheus-client is imported (it reads this once)
    config = serving_config(args, settings, metrics_dir=metrics_dir)

    def load() -> Any:
        from serving.app import create_app

        return create_app(config)

    options = gunicorn_options(bind=args.bind, workers=args.workers, threads=args.threads, timeout=args.timeout,
                               access_log=args.access_log)
    return run_gunicorn(load, options, cleanup=own_dir)


def gunicorn_options(*, bind: str, workers: int, threads: int = 1, timeout: int = DEFAULT_TIMEOUT_S,
                     access_log: bool = False) -> dict[str, Any]:
    """The gunicorn settings ``bayesopt serve`` uses (the serving benchmark runs its bare app with the same)."""
    return {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": timeout,
        "accesslog": "-" if access_log else None,
        "proc_name": "bayesopt-serve",
    }


def run_gunicorn(load: Callable[[], Any], options: dict[str, Any], *, cleanup: str | None = None) -> int:
    """Run gunicorn in the foreground until it stops; ``load()`` builds the WSGI app in each worker after the fork.

    ``cleanup`` is a directory the master removes on exit (forked workers leave through this frame too).
    """
    from gunicorn.app.base import BaseApplication
    from prometheus_client import multiprocess

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)
            if os.environ.get(MULTIPROC_ENV):
                self.cfg.set("child_exit", lambda server, worker: multiprocess.mark_process_dead(worker.pid))
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1 shares one socket path per user
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            return load()

    master = os.getpid()
    try:
        Application().run()
    except SystemExit as exc:
        if os.getpid() != master:
            raise  # a worker exiting: only the master returns from here
        return int(exc.code or 0)
    finally:
        if cleanup is not None and os.getpid() == master:
            shutil.rmtree(cleanup, ignore_errors=True)
    return 0


def serving_config(args: argparse.Namespace, settings: Settings, *, metrics_dir: str | None = None) -> ServingConfig:
    """The app's config: the environment's settings (``settings.environment``), then the flags given.

    Args:
        args: the parsed ``serve`` flags; those left unset (None) keep the environment's value.
        settings: the CLI's settings; the store URL resolves the embedded Redis when ``REDIS_URL`` is unset.
        metrics_dir: prometheus-client's multiprocess directory (default: the environment's).
    """
    flags = {"poll_interval_s": args.poll_interval, "mode": args.mode, "coupling_horizon": args.coupling_horizon,
             "modes": None if args.coupled is None else {name: "coupled" for name in args.coupled}}
    overrides: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    if metrics_dir is not None:
        overrides["metrics_multiprocess_dir"] = metrics_dir
    return settings.environment.serving_config(redis_url=settings.store_url(), **overrides)
