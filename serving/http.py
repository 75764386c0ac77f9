"""Small request and response helpers shared by the route modules."""

from __future__ import annotations

import hmac
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, request

from param_store import ParamStore
from serving.cache import DistributionCache
from serving.config import ServingConfig
from serving.errors import BadRequestError, UnauthorizedError
from serving.metrics import ServingMetrics

EXTENSION_KEY = "bayesopt_serving"


@dataclass
class ServingContext:
    """What the routes of one app share: its config, store, cache and metrics (``app.extensions``)."""

    config: ServingConfig
    store: ParamStore
    cache: DistributionCache
    metrics: ServingMetrics

    def close(self) -> None:
        """Stop the cache's refresh threads and the store connection (tests; gunicorn just exits)."""
        self.cache.close()
        self.metrics.stop()
        self.store.close()


def context() -> ServingContext:
    return current_app.extensions[EXTENSION_KEY]


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact JSON (no key sorting: the hot path pays for every microsecond)."""
    body = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    return Response(body, status=status, mimetype="application/json", headers=headers)


def read_json_object() -> dict[str, Any]:
    """The request body as a JSON object; raises :class:`BadRequestError` naming what is wrong with it."""
    raw = request.get_data(cache=False)
    if not raw:
        raise BadRequestError("the request body is empty; send a JSON object", code="invalid_json")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise BadRequestError(f"the request body must be a JSON object, got {type(doc).__name__}", code="invalid_json")
    return doc


def query_params() -> dict[str, str]:
    """The query string as a dict, first value per name (as ``request.args.get``).

    Plain ASCII query strings without escapes, the usual ``member_id=12345``, are split directly: this runs on
    every single-member request and werkzeug's general parser costs several times more.
    """
    environ = request.environ
    qs = environ.get("QUERY_STRING", "")
    if "%" in qs or "+" in qs or not qs.isascii():
        return request.args.to_dict(flat=True)
    out: dict[str, str] = {}
    for part in qs.split("&"):
        if part:
            key, _, value = part.partition("=")
            out.setdefault(key, value)
    return out


def request_time(value: Any, field: str = "at") -> float:
    """``value`` as epoch seconds (the request's own time if absent); raises :class:`BadRequestError`."""
    if value is None:
        return time.time()
    try:
        at = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        at = math.nan
    if not math.isfinite(at) or at < 0:
        raise BadRequestError(f"{field}: must be a time in epoch seconds, got {value!r}", problems=[f"{field}: invalid time {value!r}"])
    return at


def require_admin() -> None:
    """Raise :class:`UnauthorizedError` unless the configured admin bearer token (if any) was sent."""
    token = context().config.admin_token
    if token is None:
        return
    sent = request.headers.get("Authorization", "")
    if not (sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].encode(), token.encode())):
        raise UnauthorizedError("this admin endpoint needs the header 'Authorization: Bearer <admin token>'")
