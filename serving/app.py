"""The Flask app factory, the one error handler, and the operational routes (health, readiness, metrics, OpenAPI).

Every error leaves the app through :func:`handle_error` as ``{"error": {"code", "message", "problems"}}`` with
a 4xx status for the caller's mistakes and 5xx for ours (details of a 500 go to the log, not the response).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from bayesopt.errors import (
    DistributionValidationError,
    ObservationValidationError,
    SpecValidationError,
    ValidationError,
)
from param_store import (
    ExperimentExistsError,
    ExperimentNotFoundError,
    InvalidTransitionError,
    ObservationRejectedError,
    ParamStore,
    StoreUnavailableError,
    VersionConflictError,
    VersionNotFoundError,
    make_client,
)
from serving import admin, analysts, api
from serving.cache import DistributionCache
from serving.config import ServingConfig
from serving.errors import ServingError
from serving.http import EXTENSION_KEY, ServingContext, context, json_response
from serving.metrics import ServingMetrics
from serving.openapi import openapi_document

log = logging.getLogger(__name__)

#: One retry of a failed Redis command: with serving's short timeouts a hung store costs a write at most ~2 s.
SERVING_RETRIES = 1
#: What a client is told when the store cannot be reached (the details, host and port included, go to the log).
STORE_UNAVAILABLE_MESSAGE = "the parameter store is unavailable; retry later"

#: During an outage every write fails alike: one log line per this many seconds says so, with a count.
OUTAGE_LOG_INTERVAL_S = 10.0


class _ThrottledLog:
    """At most one warning per ``interval_s``; the next one says how many were held back."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self.logger, self.interval_s = logger, interval_s
        self._next, self._held, self._lock = 0.0, 0, threading.Lock()

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return
            held, self._held, self._next = self._held, 0, now + self.interval_s
        suffix = f" (and {held} more like it in the last {self.interval_s:.0f} s)" if held else ""
        self.logger.warning(message + suffix, *args)


_OUTAGE_LOG = _ThrottledLog(log, OUTAGE_LOG_INTERVAL_S)

#: (exception class, HTTP status, error code), first match wins; ServingError and HTTPException carry their own.
ERROR_TABLE: tuple[tuple[type[BaseException], int, str], ...] = (
    (ExperimentNotFoundError, 404, "experiment_not_found"),
    (VersionNotFoundError, 404, "version_not_found"),
    (ObservationRejectedError, 422, "observations_rejected"),
    (ObservationValidationError, 422, "invalid_observations"),
    (SpecValidationError, 422, "invalid_spec"),
    (DistributionValidationError, 422, "invalid_distribution"),
    (ValidationError, 422, "invalid_input"),
    (ExperimentExistsError, 409, "experiment_exists"),
    (InvalidTransitionError, 409, "invalid_transition"),
    (VersionConflictError, 409, "version_conflict"),
    (StoreUnavailableError, 503, "store_unavailable"),
)


def create_app(config: ServingConfig, *, store: ParamStore | None = None) -> Flask:
    """Build the app: its own Redis client, cache (warmed, refresh threads started) and metrics registry.

    Call it once per process *after* forking (gunicorn workers each call it), never at import time.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    store = store or ParamStore(make_client(config.redis_url, socket_timeout_s=config.redis_timeout_s,
                                            connect_timeout_s=config.redis_connect_timeout_s, retries=SERVING_RETRIES),
                                namespace=config.namespace)
    metrics = ServingMetrics(multiprocess_dir=config.metrics_multiprocess_dir)
    cache = DistributionCache(store, config, listener=metrics.on_snapshot, alarm_listener=metrics.on_alarm,
                              store_listener=metrics.on_store_health)
    if not config.tokens:
        log.warning("no BAYESOPT_ADMIN_TOKEN or BAYESOPT_INGEST_TOKEN is set: every write endpoint (launch, "
                    "lifecycle, rollback, observations) is open to anyone who can reach this server")
    ctx = app.extensions[EXTENSION_KEY] = ServingContext(config=config, store=store, cache=cache, metrics=metrics)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(admin.blueprint)
    app.register_blueprint(analysts.blueprint)
    _register_ops(app)
    app.register_error_handler(Exception, handle_error)
    app.wsgi_app = _Instrumented(app.wsgi_app, ctx)  # type: ignore[method-assign]
    if config.warm_on_start:
        cache.warm_up()
    cache.start()
    metrics.start()
    return app


def handle_error(exc: Exception) -> Response:
    """The one place where exceptions become HTTP responses."""
    problems: list[str] = list(getattr(exc, "problems", None) or [])
    if isinstance(exc, ServingError):
        status, code, message = exc.status, exc.code, str(exc)
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        message = exc.description or exc.name
    else:
        match = next(((s, c) for cls, s, c in ERROR_TABLE if isinstance(exc, cls)), None)
        if match is None:
            log.exception("unhandled error on %s %s", request.method, request.path)
            status, code, message, problems = 500, "internal_error", "internal server error (see the server log)", []
        elif isinstance(exc, StoreUnavailableError):
            _OUTAGE_LOG.warning("%s %s -> 503: %s", request.method, request.path, exc)
            (status, code), message, problems = match, STORE_UNAVAILABLE_MESSAGE, []
        else:
            (status, code), message = match, str(exc)
    if status >= 500 and status != 503:
        log.error("%s %s -> %d %s: %s", request.method, request.path, status, code, message)
    response = json_response({"error": {"code": code, "message": message, "problems": problems or [message]}}, status=status)
    if isinstance(exc, HTTPException):  # e.g. Allow on a 405: the JSON body must not drop werkzeug's headers
        for header, value in exc.get_headers():
            if header.lower() != "content-type":
                response.headers[header] = value
    return response


class _Instrumented:
    """WSGI middleware: server time in a ``Server-Timing`` header, request metrics by endpoint, and the fast
    path of the single-member parameter request (:func:`serving.api.fast_params`).

    A middleware rather than Flask hooks because it is cheaper on the hot path; it reads the endpoint from the
    request object werkzeug leaves in the environ, at the moment the response starts.
    """

    def __init__(self, wsgi_app: Callable[..., Any], ctx: ServingContext) -> None:
        self.wsgi_app = wsgi_app
        self.ctx = ctx
        self.metrics = ctx.metrics

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        fast = api.fast_params(self.ctx, environ)
        if fast is not None:
            body, headers = fast
            elapsed = time.perf_counter() - started
            headers.append(("Server-Timing", f"app;dur={elapsed * 1000:.3f}"))
            self.metrics.observe_request(api.PARAMS_ENDPOINT, "GET", "200", elapsed)
            start_response("200 OK", headers)
            return [body]

        def timed_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            elapsed = time.perf_counter() - started
            headers.append(("Server-Timing", f"app;dur={elapsed * 1000:.3f}"))
            req = environ.get("werkzeug.request")
            endpoint = getattr(req, "endpoint", None) or "unmatched"
            self.metrics.observe_request(endpoint, environ.get("REQUEST_METHOD", ""), status[:3], elapsed)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, timed_start_response)


def _register_ops(app: Flask) -> None:
    @app.get("/v1/health")
    def health() -> Response:
        """Liveness only: the process answers HTTP (it never looks at the store)."""
        return json_response({"status": "ok"})

    @app.get("/v1/ready")
    def ready() -> Response:
        """Ready = can serve parameters for the experiments it knows; store trouble is a detail, not a 503."""
        return readiness(context().cache)

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = context().metrics.exposition()
        return Response(body, content_type=content_type)

    @app.get("/v1/openapi.json")
    def openapi() -> Response:
        return json_response(openapi_document(context().config))


def readiness(cache: DistributionCache) -> Response:
    """200 once the cache has been filled from the store at least once (it then serves from memory whatever
    happens to the store); 503 before that. The body says how the store is doing and lists alarms."""
    alarms = cache.alarms()
    store_state = "reachable" if cache.store_reachable else "unreachable"
    if not cache.warm:
        status = "not_ready"
    elif alarms or not cache.store_reachable:
        status = "degraded"
    else:
        status = "ready"
    body = {
        "status": status,
        "experiments": len(cache.names()),
        "store": {"state": store_state, "seconds_since_contact": round(cache.seconds_since_store_contact(), 3)},
        "alarms": [{"experiment": name, "reason": reason} for name, reason in sorted(alarms.items())],
        "checks": {"cache_warm": cache.warm, "store_reachable": cache.store_reachable},
    }
    return json_response(body, status=200 if cache.warm else 503)
