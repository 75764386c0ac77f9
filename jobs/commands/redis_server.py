"""``bayesopt redis start|stop|status``: the long-lived embedded server CLI commands share."""

from __future__ import annotations

import argparse

from jobs.settings import Settings
from param_store import EmbeddedRedis


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("redis", help="manage the embedded redis-server used when REDIS_URL is unset")
    p.add_argument("action", choices=("start", "stop", "status", "url"))
    p.set_defaults(handler=cmd_redis)


def cmd_redis(args: argparse.Namespace, settings: Settings) -> int:
    if settings.redis_url:
        print(f"REDIS_URL is set ({settings.redis_url}); the embedded server is not used")
        return 0
    server = EmbeddedRedis(settings.state_dir / "redis", persist=settings.persist, detach=True)
    if args.action == "start":
        server.ensure_running()
        print(f"embedded redis running at {server.url}")
    elif args.action == "stop":
        running = server.is_running()
        server.stop()
        print("embedded redis stopped" if running else "embedded redis was not running")
    elif args.action == "url":
        print(server.url)
    else:
        print(f"embedded redis {'running' if server.is_running() else 'stopped'} at {server.url}")
    return 0
