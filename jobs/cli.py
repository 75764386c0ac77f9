"""The ``bayesopt`` command line. The one place where errors become exit codes.

Exit codes (:class:`jobs.commands.ExitCode`), the same for every command:

- 0: done.
- 1: a failure input cannot fix: the store is unreachable, a refit kept the old version because of broken data
  or a failed fit, the output pipe was closed early (``bayesopt history X | head -1``), or a bug (with traceback).
- 2: bad input: an invalid spec, flag or environment variable, an unknown experiment or version, a disallowed
  transition; one line per problem on stderr.

Ctrl-C exits 130, as shells expect. Commands come from :data:`COMMAND_MODULES` and from other installed
packages through the :data:`COMMAND_GROUP` entry-point group (the simulator's ``demo``, ``simulate`` and
``bench``); a plugin is imported only when its command is asked for, or to list every command in the help.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from jobs.commands import ExitCode
from jobs.settings import Settings

DISTRIBUTION = "bayesopt-service"
#: Entry-point group of commands added by other packages: ``name = "module:register"``, where
#: ``register(subparsers)`` adds the command ``name`` whose handler is ``fn(args, settings) -> int``.
COMMAND_GROUP = "bayesopt.commands"
#: This package's command modules, each with ``register(subparsers)``.
COMMAND_MODULES = (
    "jobs.commands.analysts",
    "jobs.commands.experiment",
    "jobs.commands.observations",
    "jobs.commands.redis_server",
    "jobs.commands.refit",
    "jobs.commands.serve",
)
#: Kept for callers that name them; the table itself is :class:`ExitCode`.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = ExitCode.OK, ExitCode.FAILURE, ExitCode.USAGE
EXIT_INTERRUPTED = 130


def version() -> str:
    """The installed distribution's version, or ``unknown`` when running from an uninstalled tree."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def plugin_commands() -> dict[str, metadata.EntryPoint]:
    """Commands other installed packages register in :data:`COMMAND_GROUP`, by name (nothing is imported)."""
    return {ep.name: ep for ep in metadata.entry_points(group=COMMAND_GROUP)}


def _requested(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` (the top level has no options taking values), or None."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser with this package's commands and the plugin commands ``argv`` may need.

    Args:
        argv: the arguments to be parsed; with a command of this package, no plugin is imported. None loads
            every plugin (for the full help).
    """
    parser = argparse.ArgumentParser(
        prog="bayesopt",
        description="Online Bayesian optimisation of ranking parameters. Uses REDIS_URL, or an embedded "
        "redis-server under $BAYESOPT_HOME (default ./.bayesopt) when it is unset.",
        epilog="Exit codes: 0 done, 1 failure (store unreachable, refit problem, closed pipe), "
        "2 bad input (invalid spec or flag, unknown experiment or version, disallowed transition).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    wanted = None if argv is None else _requested(argv)
    if wanted in sub.choices:
        return parser  # production commands never import plugin code
    plugins = {n: ep for n, ep in plugin_commands().items() if n not in sub.choices}
    for name, entry in sorted(plugins.items()):
        if wanted in plugins and name != wanted:
            continue
        entry.load()(sub)
    return parser


def exit_code_for(exc: BaseException) -> ExitCode | None:
    """The exit code of an error a command may raise, or None for an unexpected one (a bug)."""
    from bayesopt.errors import ValidationError
    from jobs.errors import ExecutorChoiceError, PolicyNotFoundError
    from param_store.errors import StoreError
    from serving.errors import ServingConfigError

    if isinstance(exc, (ValidationError, ServingConfigError, PolicyNotFoundError, ExecutorChoiceError)):
        return ExitCode.USAGE
    if isinstance(exc, StoreError):
        # lookups (unknown experiment or version) and refusals (exists, bad transition, bad rows) are input
        # problems; an unreachable store or an embedded server that will not start are failures
        return ExitCode.USAGE if isinstance(exc, (LookupError, ValueError)) else ExitCode.FAILURE
    if isinstance(exc, ConnectionError):  # StoreUnavailableError and ExecutorUnavailableError co-inherit it
        return ExitCode.FAILURE
    return None


def _problems(exc: BaseException) -> list[str]:
    problems = getattr(exc, "problems", None)
    return list(problems) if problems else [str(exc)]


def _run(argv: Sequence[str]) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings) or ExitCode.OK)
    except KeyboardInterrupt:
        print("bayesopt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # a ConnectionError too, but not the store's: main handles it
    except Exception as exc:
        code = exit_code_for(exc)
        if code is None:
            raise
        lines = _problems(exc) if code is ExitCode.USAGE else [str(exc)]
        for line in lines:
            print(f"bayesopt: error: {line}", file=sys.stderr)
        return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (:class:`ExitCode`).

    Args:
        argv: the arguments without the program name (default ``sys.argv[1:]``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows up here, inside the handler below
    except BrokenPipeError:
        # the reader went away (``| head``): stop quietly, and keep the interpreter's own last flush from
        # reporting the same error on exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILURE


if __name__ == "__main__":
    sys.exit(main())
