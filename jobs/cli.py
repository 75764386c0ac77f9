"""The ``bayesopt`` command line. The one place where errors become exit codes.

Exit codes: 0 success; 2 bad input (invalid spec, unknown experiment or version, disallowed transition), one
line per problem on stderr; 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from jobs.settings import Settings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

#: Modules that each add subcommands with ``register(subparsers)``; a handler is ``fn(args, settings) -> int``.
COMMAND_MODULES = (
    "jobs.commands.experiment",
    "jobs.commands.redis_server",
    "jobs.commands.demo",
    "jobs.commands.refit",
    "jobs.commands.serve",
    "jobs.commands.simulate",
    "jobs.commands.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesopt",
        description="Online Bayesian optimisation of ranking parameters. Uses REDIS_URL, or an embedded "
        "redis-server under $BAYESOPT_HOME (default ./.bayesopt) when it is unset.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # a command group not built yet
            raise
        module.register(sub)
    return parser


def _problems(exc: BaseException) -> list[str]:
    problems = getattr(exc, "problems", None)
    return list(problems) if problems else [str(exc)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    from bayesopt.errors import ValidationError
    from param_store.errors import StoreError

    try:
        return int(args.handler(args, settings) or EXIT_OK)
    except (ValidationError, StoreError) as exc:
        if isinstance(exc, StoreError) and isinstance(exc, RuntimeError):
            print(f"bayesopt: error: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        for line in _problems(exc):
            print(f"bayesopt: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bayesopt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
