"""Small request and response helpers shared by the route modules."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from param_store import ParamStore
from serving.cache import DistributionCache
from serving.config import ServingConfig
from serving.errors import BadRequestError
from serving.metrics import ServingMetrics

EXTENSION_KEY = "bayesopt_serving"
#: Bodies are read in pieces of this size, so an oversized chunked body is refused after limit + 1 bytes.
READ_CHUNK_BYTES = 64 * 1024


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
    """The request body as a JSON object; raises :class:`BadRequestError` naming what is wrong with it.

    A body over the app's limit is refused with 413 whether it has a ``Content-Length`` or is chunked (read
    up to one byte past the limit, never truncated); JSON nested deeper than the parser's stack is a 400.
    """
    raw = read_body(current_app.config["MAX_CONTENT_LENGTH"])
    if not raw:
        raise BadRequestError("the request body is empty; send a JSON object", code="invalid_json")
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise BadRequestError("the request body is JSON nested too deeply", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise BadRequestError(f"the request body must be a JSON object, got {type(doc).__name__}", code="invalid_json")
    return doc


def read_body(limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes; raises werkzeug's 413 above it (chunked bodies included)."""
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    # A server that terminates the input itself (gunicorn; werkzeug for chunked bodies) is read directly, as
    # werkzeug's own wrapper would stop quietly at the limit, and a chunked body over it would be truncated.
    environ = request.environ
    stream = environ["wsgi.input"] if environ.get("wsgi.input_terminated") else request.stream
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(READ_CHUNK_BYTES, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()
    return b"".join(chunks)


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
