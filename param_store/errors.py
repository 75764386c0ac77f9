"""Exceptions of the Redis store. Validation errors co-inherit ``ValueError``; lookups ``LookupError``.

Callers outside :mod:`param_store` never see a ``redis.*`` exception for a lost server: it arrives as
:class:`StoreUnavailableError` (see :func:`param_store.connection.store_boundary`).
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of every error raised by :mod:`param_store`."""


class StoreUnavailableError(StoreError, ConnectionError):
    """Redis could not be reached or did not answer in time, after the client's retries; retry later."""


class ExperimentNotFoundError(StoreError, LookupError):
    """No experiment of that name has been stored; launch it first."""


class ExperimentExistsError(StoreError, ValueError):
    """An experiment of that name exists already; pick another name or end and remove the old one."""


class VersionNotFoundError(StoreError, LookupError):
    """That distribution version was never published for the experiment."""


class VersionConflictError(StoreError, ValueError):
    """The version exists already or is not newer than ``current``; versions are immutable and only move forward."""


class InvalidTransitionError(StoreError, ValueError):
    """The experiment's lifecycle does not allow that change of state."""


class ObservationRejectedError(StoreError, ValueError):
    """An observation batch refers to versions, arms or metrics that do not exist; nothing of it was stored."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("observations rejected: " + "; ".join(problems))


class EmbeddedRedisError(StoreError, RuntimeError):
    """The embedded ``redis-server`` could not be found or started."""
