"""The ranker-facing routes: parameters for one member or a batch, the distribution, observations."""

from __future__ import annotations

import hashlib
import json
import time
import weakref
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request

from bayesopt.errors import ObservationValidationError
from bayesopt.simulator_observations import SIMULATION
from param_store import ExperimentNotFoundError
from serving.assignment import Assignment, ServingSnapshot, canonical_member_id
from serving.auth import INGEST, requires
from serving.cache import Staleness
from serving.errors import BadRequestError, BatchTooLargeError, ServiceUnavailableError
from serving.http import ServingContext, context, json_response, query_params, read_json_object, request_time

if TYPE_CHECKING:
    from param_store import ParamStore
    from param_store.store import BatchResult

blueprint = Blueprint("api", __name__, url_prefix="/v1/experiments")

JSON = "application/json"
#: Set on parameter and distribution responses served while the store does not confirm them:
#: ``<reason>; age=<seconds since the store last answered>``, reason one of store_unavailable,
#: missing_from_store, version_regressed.
STALE_HEADER = "Bayesopt-Stale"
#: A batch's idempotency key: a retried batch with the same key is stored once (also ``batch_id`` in the body).
IDEMPOTENCY_HEADER = "Idempotency-Key"
BATCH_FIELDS = frozenset({"rows", "batch_id"})
#: The C string encoder behind ``json.dumps(str)``, without the call overhead (member ids are the only free text).
_json_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


class _Fragments:
    """Pre-serialised JSON pieces of one snapshot's responses: everything but the member id depends only on
    (version, arm, enrolment), so each piece is encoded once per snapshot instead of once per member."""

    def __init__(self, snapshot: ServingSnapshot) -> None:
        self.experiment = _json_str(snapshot.experiment)
        self._single: dict[tuple[int, str, bool], str] = {}
        self._batch: dict[tuple[int, str, bool], str] = {}

    def single(self, a: Assignment) -> str:
        key = (a.version, a.arm_id, a.in_experiment)
        piece = self._single.get(key)
        if piece is None:
            piece = self._single[key] = _dumps({"version": a.version, **_fields(a)})[1:]
        return piece

    def batch_item(self, a: Assignment) -> str:
        key = (a.version, a.arm_id, a.in_experiment)
        piece = self._batch.get(key)
        if piece is None:
            piece = self._batch[key] = _dumps(_fields(a))[1:]
        return piece


def _fields(a: Assignment) -> dict[str, Any]:
    return {"arm_id": a.arm_id, "values": a.values, "propensity": a.propensity, "in_experiment": a.in_experiment,
            "on_control": a.on_control}


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


_FRAGMENTS: weakref.WeakKeyDictionary[ServingSnapshot, _Fragments] = weakref.WeakKeyDictionary()


def _fragments(snapshot: ServingSnapshot) -> _Fragments:
    fragments = _FRAGMENTS.get(snapshot)
    if fragments is None:
        fragments = _FRAGMENTS.setdefault(snapshot, _Fragments(snapshot))
    return fragments


#: Serialised distribution documents and their (unquoted) ETags, computed once per snapshot.
_DOCUMENTS: weakref.WeakKeyDictionary[ServingSnapshot, tuple[bytes, str]] = weakref.WeakKeyDictionary()


@blueprint.get("/<name>/params")
def params(name: str) -> Response:
    ctx = context()
    snapshot = ctx.cache.get(name)
    query = query_params()
    member_id = _member_id(query.get("member_id"), "member_id", ctx.config.max_member_id_length)
    at = query.get("at")
    body = _params_body(ctx, name, snapshot, member_id, time.time() if at is None else request_time(at))
    return _marked(Response(body, content_type=JSON), ctx.cache.staleness(name))


def _params_body(ctx: ServingContext, name: str, snapshot: ServingSnapshot, member_id: str, at: float) -> str:
    """The single-member response body (counted in the assignment metrics)."""
    assignment = snapshot.assign(member_id, at)
    ctx.metrics.count_assignments(name, 1 if assignment.in_experiment else 0, 1)
    fragments = _fragments(snapshot)
    return f'{{"experiment":{fragments.experiment},"member_id":{_json_str(member_id)},{fragments.single(assignment)}'


PARAMS_PREFIX, PARAMS_SUFFIX = "/v1/experiments/", "/params"
PARAMS_ENDPOINT = "api.params"


def fast_params(ctx: ServingContext, environ: dict[str, Any]) -> tuple[bytes, list[tuple[str, str]]] | None:
    """The usual parameter request served straight from the WSGI environ, without Flask's routing and request
    context (the busiest route pays for neither): ``GET /v1/experiments/<held name>/params?member_id=<plain id>``.

    Returns the body and headers of the 200 response, or None for anything else (an unknown name, a missing,
    escaped or over-long id, ``at``, another method), which the Flask route then answers with the same result
    or the right error.
    """
    if environ.get("REQUEST_METHOD") != "GET":
        return None
    path: str = environ.get("PATH_INFO", "")
    if not (path.startswith(PARAMS_PREFIX) and path.endswith(PARAMS_SUFFIX)):
        return None
    name = path[len(PARAMS_PREFIX) : -len(PARAMS_SUFFIX)]
    snapshot = ctx.cache.held(name)
    qs: str = environ.get("QUERY_STRING", "")
    if snapshot is None or not qs.startswith("member_id=") or "&" in qs or "%" in qs or "+" in qs or not qs.isascii():
        return None
    member_id = qs[len("member_id=") :]
    if not member_id or len(member_id) > ctx.config.max_member_id_length:
        return None
    body = _params_body(ctx, name, snapshot, member_id, time.time()).encode()
    headers = [("Content-Type", JSON), ("Content-Length", str(len(body)))]
    staleness = ctx.cache.staleness(name)
    if staleness is not None:
        headers.append((STALE_HEADER, staleness.header()))
    return body, headers


@blueprint.post("/<name>/params/batch")
def params_batch(name: str) -> Response:
    ctx = context()
    snapshot = ctx.cache.get(name)
    doc = read_json_object()
    raw_ids = doc.get("member_ids")
    if not isinstance(raw_ids, list) or not raw_ids:
        raise BadRequestError(f"member_ids: must be a non-empty list of member ids, got {type(raw_ids).__name__}",
                              problems=["member_ids: must be a non-empty list"])
    if len(raw_ids) > ctx.config.max_batch:
        raise BatchTooLargeError(f"member_ids: {len(raw_ids)} ids exceed the limit of {ctx.config.max_batch} per "
                                 "request; split the batch", problems=[f"member_ids: more than {ctx.config.max_batch} ids"])
    member_ids = _member_ids(raw_ids, ctx.config.max_member_id_length)
    assignments = snapshot.assign_many(member_ids, request_time(doc.get("at")))
    ctx.metrics.count_assignments(name, sum(1 for a in assignments if a.in_experiment), len(assignments))
    fragments, encode = _fragments(snapshot), _json_str
    items = ",".join([f'{{"member_id":{encode(a.member_id)},{fragments.batch_item(a)}' for a in assignments])
    body = f'{{"experiment":{fragments.experiment},"version":{assignments[0].version},"assignments":[{items}]}}'
    return _marked(Response(body, content_type=JSON), ctx.cache.staleness(name))


@blueprint.get("/<name>/distribution")
def distribution(name: str) -> Response:
    cache = context().cache
    snapshot = cache.get(name)
    body, tag = _document(snapshot)
    headers = {"ETag": f'"{tag}"', "Cache-Control": "no-cache"}
    if request.if_none_match.contains(tag):
        return _marked(Response(status=304, headers=headers), cache.staleness(name))
    return _marked(Response(body, mimetype="application/json", headers=headers), cache.staleness(name))


def _marked(response: Response, staleness: Staleness | None) -> Response:
    """Add the ``Bayesopt-Stale`` header when the store has not confirmed what is served (see docs/operations.md)."""
    if staleness is not None:
        response.headers[STALE_HEADER] = staleness.header()
    return response


@blueprint.post("/<name>/observations")
@requires(INGEST)
def observations(name: str) -> Response:
    ctx = context()
    held = ctx.cache.get(name)  # 404 for an unknown experiment before looking at the rows
    doc = read_json_object()
    unknown = sorted(set(doc) - BATCH_FIELDS)
    if unknown:
        raise ObservationValidationError([f"{field}: unknown field; a batch has {', '.join(sorted(BATCH_FIELDS))}"
                                          for field in unknown])
    rows = doc.get("rows")
    if not isinstance(rows, list):
        raise ObservationValidationError(f"rows: must be a list of observation rows, got {type(rows).__name__}")
    batch_id = _batch_id(request.headers.get(IDEMPOTENCY_HEADER), doc.get("batch_id"))
    try:
        result = _store_rows(ctx.store, name, rows, batch_id)
    except ExperimentNotFoundError:
        if not held.distributions:
            raise
        ctx.cache.report_missing(name)
        # the worker serves it but the store lost it: keep the rows at the client until an operator restores it
        raise ServiceUnavailableError(f"experiment {name!r} is missing from the store (an operator must restore it); "
                                      "retry this batch later", code="store_lost_experiment") from None
    if not result.duplicate:
        ctx.metrics.observation_rows.labels(name).inc(result.accepted)
    return json_response({"experiment": name, "accepted": result.accepted, "duplicate": result.duplicate,
                          "batch_id": batch_id}, status=200 if result.duplicate else 201)


def _batch_id(header: str | None, field: Any) -> str | None:
    """The batch's idempotency key, from the header or the body (both may be given if they agree)."""
    if header is not None and field is not None and header != field:
        raise ObservationValidationError(f"batch_id: {field!r} differs from the {IDEMPOTENCY_HEADER} header {header!r}")
    return header if header is not None else field


def _store_rows(store: ParamStore, name: str, rows: list[Any], batch_id: str | None) -> BatchResult:
    """Online rows go to the per-version statistics, ``source=simulation`` rows to the simulator ones (keyed
    by run and parameter values); a batch is one or the other, so that it is stored or refused whole, once."""
    simulated = [isinstance(r, dict) and r.get("source") == SIMULATION for r in rows]
    if not any(simulated):
        return store.add_batch(name, rows, batch_id=batch_id)
    if not all(simulated):
        online = [i for i, s in enumerate(simulated) if not s][:5]
        raise ObservationValidationError(f"rows: a batch is all source=simulation or all online; rows {online} are not "
                                         f"simulation rows (send them in a separate batch)")
    return store.add_simulator_observations(name, rows, batch_id=batch_id)


def _document(snapshot: ServingSnapshot) -> tuple[bytes, str]:
    cached = _DOCUMENTS.get(snapshot)
    if cached is None:
        doc: dict[str, Any] = snapshot.to_dict()
        if snapshot.distributions:
            doc["distribution"] = snapshot.distributions[-1][1].to_dict()
        body = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
        cached = (body, hashlib.blake2b(body, digest_size=12).hexdigest())
        _DOCUMENTS[snapshot] = cached
    return cached


def _member_id(value: Any, field: str, max_length: int) -> str:
    if value is None:
        raise BadRequestError(f"{field}: is required (e.g. ?member_id=12345)", problems=[f"{field}: is required"],
                              code="invalid_member_id")
    try:
        return canonical_member_id(value, max_length=max_length)
    except ValueError as exc:
        raise BadRequestError(f"{field}: {exc}", problems=[f"{field}: {exc}"], code="invalid_member_id") from None


def _member_ids(values: list[Any], max_length: int) -> list[str]:
    out, problems = [], []
    for i, value in enumerate(values):
        try:
            out.append(canonical_member_id(value, max_length=max_length))
        except ValueError as exc:
            problems.append(f"member_ids[{i}]: {exc}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise BadRequestError(f"{len(problems)} invalid member id(s): {shown[0]}", problems=shown, code="invalid_member_id")
    return out
