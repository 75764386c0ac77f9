"""Exceptions of the serving package. Each names its HTTP status and a stable machine-readable ``code``.

Only :func:`serving.app.create_app`'s one error handler turns exceptions into HTTP responses; the client turns
error responses back into :class:`ServingHTTPError`.
"""

from __future__ import annotations


class ServingError(Exception):
    """Root of every error raised by :mod:`serving`."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, problems: list[str] | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems else []
        if code is not None:
            self.code = code


class ServingConfigError(ServingError, ValueError):
    """A serving setting is out of range; fix the named field."""


class BadRequestError(ServingError, ValueError):
    """The request is malformed (bad JSON, missing or invalid member id); fix it, do not retry as is."""

    status = 400
    code = "bad_request"


class BatchTooLargeError(ServingError, ValueError):
    """More member ids than one batch may carry; split the batch."""

    status = 413
    code = "batch_too_large"


class UnauthorizedError(ServingError, PermissionError):
    """A write endpoint was called without a valid bearer token (or its scope has none configured)."""

    status = 401
    code = "unauthorized"


class ForbiddenError(ServingError, PermissionError):
    """A valid token of the wrong scope was sent; use a token of the scope the endpoint names."""

    status = 403
    code = "forbidden"


class NoDistributionError(ServingError, LookupError):
    """The experiment exists but has no activated distribution version yet; launch or publish one."""

    status = 409
    code = "no_distribution"


class IncompleteHistoryError(ServingError, RuntimeError):
    """The versions a coupled assignment chain needs are not all held; reload the snapshot (retryable)."""

    status = 503
    code = "incomplete_history"


class ServiceUnavailableError(ServingError, RuntimeError):
    """The store cannot be reached or the cache is not warm yet; retry later."""

    status = 503
    code = "unavailable"


class ServingClientError(ServingError):
    """Root of the errors the Python client raises."""


class ServingHTTPError(ServingClientError):
    """The server answered with an error body; ``status``, ``code`` and ``problems`` come from it."""

    def __init__(self, status: int, code: str, message: str, problems: list[str] | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}", problems=problems, code=code)
        self.status = status
        self.message = message


class ServingUnavailableClientError(ServingClientError, ConnectionError):
    """The server could not be reached (or kept failing with 5xx) after the retry policy's attempts."""
