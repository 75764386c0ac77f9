"""Who may write: bearer tokens with scopes, checked by one decorator, and an audit line per admin action.

Scopes (a token grants exactly its own):

- ``admin``: launch, lifecycle changes, rollback, draft deletion (``BAYESOPT_ADMIN_TOKEN``);
- ``ingest``: observation batches (``BAYESOPT_INGEST_TOKEN``).

With no token configured at all, writes are open and the app logs a warning at start-up (``bayesopt serve``
also refuses to bind beyond loopback then). Once any token is configured, every write needs a token of its
scope; a scope without a token of its own is closed. Tokens are compared in constant time.

A new write route adopts this in one line::

    @blueprint.post("/<name>/pin")
    @requires(ADMIN)
    def pin(name): ...
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import request

from serving.errors import ForbiddenError, UnauthorizedError
from serving.http import context

ADMIN = "admin"
INGEST = "ingest"
SCOPES = (ADMIN, INGEST)
#: The environment variable holding each scope's token (named in error messages and the start-up warning).
TOKEN_VARIABLES = {ADMIN: "BAYESOPT_ADMIN_TOKEN", INGEST: "BAYESOPT_INGEST_TOKEN"}
#: The caller named in audit lines when no token is configured.
ANONYMOUS = "anonymous"

audit_log = logging.getLogger("bayesopt.audit")
F = TypeVar("F", bound=Callable[..., Any])


def authorise(scope: str, tokens: Mapping[str, str], authorization: str) -> str:
    """The caller's name (its scope, or ``anonymous`` when no token is configured) if ``authorization`` may act.

    Args:
        scope: the scope the endpoint needs (:data:`ADMIN` or :data:`INGEST`).
        tokens: the configured token of each scope (scopes without one are absent).
        authorization: the request's ``Authorization`` header ("" if none).

    Raises:
        UnauthorizedError: a token is configured and none, or an unknown one, was sent.
        ForbiddenError: a valid token of another scope was sent.
    """
    if not tokens:
        return ANONYMOUS
    sent = authorization[7:].encode() if authorization.startswith("Bearer ") else b""
    # every configured token is compared (constant time each), so timing says nothing about which one matched
    matched = [s for s, token in tokens.items() if hmac.compare_digest(sent, token.encode())]
    if scope in matched:
        return scope
    if matched:
        raise ForbiddenError(f"this endpoint needs a token of scope {scope!r}; the token sent has scope {matched[0]!r}")
    if scope not in tokens:
        raise UnauthorizedError(f"this endpoint needs a token of scope {scope!r}, and none is configured on this "
                                f"server; set {TOKEN_VARIABLES[scope]}")
    raise UnauthorizedError(f"this endpoint needs the header 'Authorization: Bearer <{scope} token>'")


def require_scope(scope: str) -> str:
    """Check the current request against ``scope``; returns the caller's name (see :func:`authorise`)."""
    return authorise(scope, context().config.tokens, request.headers.get("Authorization", ""))


def requires(scope: str) -> Callable[[F], F]:
    """Decorator of a view: refuse callers without a token of ``scope``; admin actions get an audit line."""
    if scope not in SCOPES:
        raise ValueError(f"scope: must be one of {', '.join(SCOPES)}, got {scope!r}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            caller = require_scope(scope)
            if scope != ADMIN:
                return view(*args, **kwargs)
            status = "ok"
            try:
                response = view(*args, **kwargs)
                status = str(getattr(response, "status_code", 200))
                return response
            except Exception as exc:
                status = f"refused:{type(exc).__name__}"
                raise
            finally:
                audit_log.info("audit who=%s what=%s %s when=%.3f result=%s remote=%s", caller, request.method,
                               request.path, time.time(), status, request.remote_addr)

        return guarded  # type: ignore[return-value]

    return decorate
