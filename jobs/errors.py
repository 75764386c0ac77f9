"""Exceptions of the refit job and the CLI: one root, subclasses named for what the caller should do."""

from __future__ import annotations


class JobsError(Exception):
    """Root of every exception raised by :mod:`jobs`."""


class PolicyNotFoundError(JobsError, ValueError):
    """A ``--policy`` reference is malformed or names nothing that implements ``RefitPolicy``; fix the name."""


class ExecutorChoiceError(JobsError, ValueError):
    """An ``--executor`` that does not exist, is not installed, or does not take the options given; fix the flags."""


class ExecutorUnavailableError(JobsError, ConnectionError):
    """The chosen executor could not start, or its cluster could not be reached: a failure, not bad input."""
