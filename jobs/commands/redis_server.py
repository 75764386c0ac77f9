"""``bayesopt redis start|stop|status|url``: the long-lived embedded server CLI commands share."""

from __future__ import annotations

import argparse

from jobs.commands import ExitCode, add_json_flag, print_json
from jobs.settings import Settings
from param_store import EmbeddedRedis, mask_url


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``redis`` to the ``bayesopt`` subcommands."""
    p = sub.add_parser("redis", help="manage the embedded redis-server used when REDIS_URL is unset")
    p.add_argument("action", choices=("start", "stop", "status", "url"),
                   help="start or stop the server under $BAYESOPT_HOME, say whether it runs, or print its URL")
    add_json_flag(p, "the server's URL and whether it runs")
    p.set_defaults(handler=cmd_redis)


def cmd_redis(args: argparse.Namespace, settings: Settings) -> int:
    """Act on the embedded server (nothing to do when ``REDIS_URL`` points elsewhere; its password is masked)."""
    if settings.redis_url:
        shown = mask_url(settings.redis_url)
        if args.json:
            print_json({"embedded": False, "url": shown})
        else:
            print(f"REDIS_URL is set ({shown}); the embedded server is not used")
        return ExitCode.OK
    server = EmbeddedRedis(settings.state_dir / "redis", persist=settings.persist, detach=True)
    was_running = server.is_running()
    if args.action == "start":
        if was_running:
            text = f"embedded redis already running at {server.url}"
        else:
            server.start()
            text = f"embedded redis running at {server.url}; {server.describe_start()}"
    elif args.action == "stop":
        server.stop()
        kept = "its data is kept in " + str(server.state_dir) if server.persist else "persistence was off: its data is gone"
        text = f"embedded redis stopped; {kept}" if was_running else "embedded redis was not running"
    elif args.action == "url":
        text = server.url
    else:
        text = f"embedded redis {'running' if was_running else 'stopped'} at {server.url} (persistence {'on' if server.persist else 'off'})"
    if args.json:
        print_json({"embedded": True, "url": server.url, "running": server.is_running(), "was_running": was_running,
                    "persist": server.persist, "fresh": server.fresh})
    else:
        print(text)
    return ExitCode.OK
