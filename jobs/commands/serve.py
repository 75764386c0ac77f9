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
from serving.errors import ServingConfigError
from serving.logs import LOG_LEVELS, configure_logging

DEFAULT_BIND = "127.0.0.1:8000"
#: Two workers suit the two-core machines this runs on; raise it with the cores.
DEFAULT_WORKERS = 2
#: Threads per gthread worker: a slow or stalled client holds one thread, not the worker (see docs/operations.md).
DEFAULT_THREADS = 8
#: A worker whose main loop is silent for this long is restarted by gunicorn.
DEFAULT_TIMEOUT_S = 30
#: Idle keep-alive connections wait in the worker's poller (no thread) this long for the next request.
DEFAULT_KEEPALIVE_S = 15
#: Hosts that count as loopback: without any token, ``serve`` binds only to these unless told otherwise.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``bayesopt`` subcommands."""
    p = sub.add_parser("serve", help="run the HTTP API under gunicorn (see docs/serving.md)")
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"host:port to listen on (default {DEFAULT_BIND})")
    p.add_argument("--workers", type=_positive_int, default=DEFAULT_WORKERS, help=f"worker processes (default {DEFAULT_WORKERS})")
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS,
                   help=f"threads per gthread worker: requests served at once per worker (default {DEFAULT_THREADS})")
    p.add_argument("--timeout", type=_positive_int, default=DEFAULT_TIMEOUT_S, help="seconds before a stuck worker is restarted")
    p.add_argument("--keepalive", type=_positive_int, default=DEFAULT_KEEPALIVE_S,
                   help=f"seconds an idle keep-alive connection is kept open (default {DEFAULT_KEEPALIVE_S})")
    p.add_argument("--allow-open-writes", action="store_true",
                   help="bind beyond loopback although no BAYESOPT_ADMIN_TOKEN / BAYESOPT_INGEST_TOKEN is set")
    p.add_argument("--poll-interval", type=float, default=None,
                   help="bound on cache staleness in seconds (default $BAYESOPT_POLL_INTERVAL_S, else the store's 5)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="default assignment mode (default $BAYESOPT_ASSIGNMENT_MODE, else epoch)")
    p.add_argument("--coupled", action="append", default=None, metavar="EXPERIMENT",
                   help="serve this experiment in coupled mode (repeatable; replaces $BAYESOPT_COUPLED_EXPERIMENTS)")
    p.add_argument("--coupling-horizon", type=_positive_int, default=None,
                   help=f"versions per coupling block (default {DEFAULT_COUPLING_HORIZON})")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.add_argument("--log-level", default=None, choices=LOG_LEVELS,
                   help="log level of gunicorn and the app (default $BAYESOPT_LOG_LEVEL, else info)")
    p.set_defaults(handler=cmd_serve)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run gunicorn in the foreground until it stops (exit 2 for an open server beyond loopback)."""
    env = settings.environment
    host = args.bind.rsplit(":", 1)[0] if ":" in args.bind else args.bind
    if not (env.admin_token or env.ingest_token) and host not in LOOPBACK_HOSTS and not args.allow_open_writes:
        raise ServingConfigError(f"--bind {args.bind}: no BAYESOPT_ADMIN_TOKEN or BAYESOPT_INGEST_TOKEN is set, so anyone "
                         "reaching this address could write; set the tokens, bind to 127.0.0.1, or pass --allow-open-writes")
    log_level = args.log_level or env.log_level
    configure_logging(log_level, env.log_format)
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
                               keepalive=args.keepalive, access_log=args.access_log, log_level=log_level)
    return run_gunicorn(load, options, cleanup=own_dir)


def gunicorn_options(*, bind: str, workers: int, threads: int = DEFAULT_THREADS, timeout: int = DEFAULT_TIMEOUT_S,
                     keepalive: int = DEFAULT_KEEPALIVE_S, access_log: bool = False,
                     log_level: str = "info") -> dict[str, Any]:
    """The gunicorn settings ``bayesopt serve`` uses (the serving benchmark runs its bare app with the same).

    Always the ``gthread`` worker: connections wait in a poller until a request arrives, and a request that
    stalls (a slow body, a hung store on a write) holds one of ``threads`` threads, never the whole worker.
    """
    return {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": timeout,
        "keepalive": keepalive,
        "accesslog": "-" if access_log else None,
        "loglevel": log_level,
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
