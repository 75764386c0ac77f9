"""The OpenAPI 3 document of the serving API, served at ``/v1/openapi.json``.

It states exactly what the server accepts: a test checks it covers every route, and a schemathesis run in the
test suite checks the server against it (no 5xx, every status, header and body as documented). A new route adds
one entry to :func:`openapi_document`'s ``paths``, built with :func:`operation`; a write passes its scope
(``scope=ADMIN`` or ``scope=INGEST``, see :mod:`serving.auth`), which adds the security requirement and the
401/403 responses.
"""

from __future__ import annotations

from typing import Any

from bayesopt.observations import MAX_ROWS_PER_BATCH, ROW_FIELDS, SOURCES
from serving.auth import ADMIN, INGEST
from serving.config import ServingConfig

API_VERSION = "1.1.0"

NAME_REGEX = "^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
BATCH_ID_REGEX = "^[A-Za-z0-9._:-]{1,128}$"

NAME = {"name": "name", "in": "path", "required": True, "description": "Experiment name.",
        "schema": {"type": "string", "pattern": NAME_REGEX}}
AT = {"name": "at", "in": "query", "required": False, "schema": {"type": "number", "minimum": 0},
      "description": "Evaluate at this time (epoch seconds) instead of now: audits and tests."}
STALE = {"Bayesopt-Stale": {
    "description": "Present when the store has not confirmed what is served: `<reason>; age=<seconds>`, reason "
                   "store_unavailable, missing_from_store or version_regressed (docs/operations.md).",
    "schema": {"type": "string"}}}

ERROR_TEXT = {
    400: "Malformed request (bad JSON, body not an object, invalid member id or time).",
    401: "Token missing or wrong, or no token of this scope is configured.",
    403: "A valid token of another scope.",
    404: "Unknown experiment or version.",
    409: "Conflicts with the experiment's state or stored versions.",
    413: "Body over the size limit (chunked bodies too) or too many ids in a batch.",
    422: "Validation failed; problems name each field.",
    503: "The store cannot be reached (retry), or the worker has not loaded the store yet.",
}
#: Every operation may answer these: a lost store, and (with a name) an unknown experiment.
COMMON_ERRORS = (503,)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def operation(summary: str, ok: dict[str, Any], *, errors: tuple[int, ...] = (), params: list[Any] | None = None,
              body: dict[str, Any] | None = None, scope: str | None = None, ok_status: str = "200",
              extra: dict[str, Any] | None = None, admin: bool = False) -> dict[str, Any]:
    """One operation; ``scope`` marks a write needing that scope's token (adds 401 and 403).

    ``admin=True`` is the older spelling of ``scope=ADMIN``.
    """
    scope = ADMIN if admin and scope is None else scope
    statuses = set(errors) | set(COMMON_ERRORS)
    if body is not None:
        statuses |= {400, 413}
    if scope is not None:
        statuses |= {401, 403}
    responses = {ok_status: ok, **(extra or {})}
    responses.update({str(s): json_body(ref("Error"), ERROR_TEXT[s]) for s in sorted(statuses)})
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if scope is not None:
        op["security"] = [{f"{scope}Token": []}]
        op["tags"] = [scope]
    return op


def _schemas(config: ServingConfig) -> dict[str, Any]:
    number_map = {"type": "object", "additionalProperties": {"type": "number"}}
    name = {"type": "string", "pattern": NAME_REGEX}
    assignment_props = {
        "member_id": {"type": "string"}, "arm_id": {"type": "string"}, "values": number_map,
        "propensity": {"type": "number", "description": "Probability of the served arm given in_experiment."},
        "in_experiment": {"type": "boolean"}, "on_control": {"type": "boolean"},
    }
    assignment_fields = ["member_id", "arm_id", "values", "propensity", "in_experiment", "on_control"]
    finite = {"type": "number"}
    row_props: dict[str, Any] = {
        "version": {"type": "integer", "minimum": 1}, "arm_id": name, "metric": name,
        "source": {"type": "string", "enum": list(SOURCES)},
        "count": {"type": "number", "minimum": 0, "exclusiveMinimum": True}, "sum": finite, "sum_sq": finite, "mean": finite,
        "std_error": {"type": "number", "minimum": 0}, "value": finite,
    }
    assert set(row_props) == ROW_FIELDS, "the row schema must name exactly the fields the server accepts"
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message", "problems"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "problems": {"type": "array", "items": {"type": "string"}}}}}},
        "Assignment": {"type": "object", "required": ["experiment", "version", *assignment_fields], "properties": {
            "experiment": {"type": "string"}, "version": {"type": "integer"}, **assignment_props}},
        "BatchRequest": {"type": "object", "required": ["member_ids"], "properties": {
            "member_ids": {"type": "array", "maxItems": config.max_batch, "minItems": 1, "items": {"oneOf": [
                {"type": "string", "minLength": 1, "maxLength": config.max_member_id_length},
                {"type": "integer", "minimum": -(10 ** 18), "maximum": 10 ** 18}]}},
            "at": {"type": "number", "minimum": 0}}},
        "BatchResponse": {"type": "object", "required": ["experiment", "version", "assignments"], "properties": {
            "experiment": {"type": "string"}, "version": {"type": "integer"},
            "assignments": {"type": "array", "items": {"type": "object", "required": assignment_fields,
                                                       "properties": assignment_props}}}},
        "Distribution": {"type": "object", "description": "ParameterDistribution.to_dict(): arms with arm_id, values, weight."},
        "Snapshot": {"type": "object", "description": "What local clients need to draw exactly as the server does.",
                     "properties": {"experiment": {"type": "string"}, "state": {"type": "string"},
                                    "experiment_share": {"type": "number"}, "stickiness_seconds": {"type": "integer"},
                                    "mode": {"type": "string", "enum": ["epoch", "coupled"]}, "horizon": {"type": "integer"},
                                    "versions": {"type": "array", "items": {"type": "object"}},
                                    "distribution": ref("Distribution")}},
        "ObservationRow": {
            "type": "object", "required": ["version", "arm_id", "metric"], "additionalProperties": False,
            "description": "One of three forms: count+sum+sum_sq, count+mean+std_error, or value (one member); "
                           "a row in none of them, or whose statistics are inconsistent, is a 422.",
            "properties": {**row_props, "source": {"type": "string", "enum": ["online"]}}},
        "SimulatorObservationRow": {
            "type": "object", "required": ["source", "run", "parameters", "metric"], "additionalProperties": False,
            "description": "A simulator row (source=simulation), keyed by simulator run and parameter values, not by a "
                           "served version; statistics in the same three forms as ObservationRow.",
            "properties": {
                "source": {"type": "string", "enum": ["simulation"]}, "run": name,
                "parameters": {"type": "object", "additionalProperties": finite},
                **{k: row_props[k] for k in ("metric", "count", "sum", "sum_sq", "mean", "std_error", "value")}}},
        "ObservationBatch": {"type": "object", "required": ["rows"], "additionalProperties": False,
                             "description": "All online rows, or all simulator rows.", "properties": {
            "rows": {"type": "array", "minItems": 1, "maxItems": MAX_ROWS_PER_BATCH,
                     "items": {"oneOf": [ref("ObservationRow"), ref("SimulatorObservationRow")]}},
            "batch_id": {"type": "string", "pattern": BATCH_ID_REGEX,
                         "description": "Idempotency key (or the Idempotency-Key header): a batch is stored once."}}},
        "BatchStored": {"type": "object", "required": ["experiment", "accepted", "duplicate"], "properties": {
            "experiment": {"type": "string"}, "accepted": {"type": "integer"}, "duplicate": {"type": "boolean"},
            "batch_id": {"type": "string", "nullable": True}}},
        "ExperimentSummary": {"type": "object", "properties": {
            "name": {"type": "string"}, "state": {"type": "string"}, "current_version": {"type": "integer", "nullable": True}}},
        "Status": {"type": "object", "properties": {
            "name": {"type": "string"}, "state": {"type": "string"}, "current_version": {"type": "integer", "nullable": True},
            "spec": {"type": "object"}, "history": {"type": "array", "items": {"type": "object"}},
            "recent_runs": {"type": "array", "items": {"type": "object"}}, "serving": {"type": "object"}}},
        "StateChange": {"type": "object", "required": ["experiment", "state"],
                        "properties": {"experiment": {"type": "string"}, "state": {"type": "string"}}},
        "Ready": {"type": "object", "required": ["status", "store", "alarms"], "properties": {
            "status": {"type": "string", "enum": ["ready", "degraded", "not_ready"]},
            "experiments": {"type": "integer"},
            "store": {"type": "object", "properties": {"state": {"type": "string", "enum": ["reachable", "unreachable"]},
                                                       "seconds_since_contact": {"type": "number"}}},
            "alarms": {"type": "array", "items": {"type": "object", "properties": {
                "experiment": {"type": "string"}, "reason": {"type": "string"}}}},
            "checks": {"type": "object"}}},
    }


# -- analysts' routes (serving/analysts.py) ----------------------------------------------------------------------
def _analyst_paths() -> dict[str, Any]:
    confidence = {"name": "confidence", "in": "query", "required": False,
                  "schema": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1,
                             "exclusiveMaximum": True, "default": 0.95},
                  "description": "Confidence of every interval."}
    report = {"type": "object", "description": "bayesopt.report.impact_report: per-window and combined lifts of "
              "the served mix and each arm against control, cumulative gain, guardrail status, sample-ratio check.",
              "properties": {k: {"type": t} for k, t in (
                  ("experiment", "string"), ("state", "string"), ("current_version", "integer"),
                  ("confidence", "number"), ("windows", "array"), ("combined", "object"), ("guardrails", "array"),
                  ("cumulative_gain", "object"), ("sample_ratio", "object"))}}
    decision = {"type": "object", "required": ["arm_id"], "properties": {
        "arm_id": {"type": "string", "minLength": 1, "description": "An arm the experiment served."},
        "reason": {"type": "string", "description": "Why; kept with the decision."}}}
    frozen = json_body({"type": "object", "properties": {"experiment": {"type": "string"}, "frozen": {"type": "boolean"},
                                                         "current_version": {"type": "integer"}}}, "The freeze state.")
    return {
        "/v1/experiments/{name}/report": {
            "get": operation("Impact report: lifts stratified by window, cumulative gain, sample ratio.",
                             json_body(report, "The report."), errors=(400, 404), params=[NAME, confidence])},
        "/v1/experiments/{name}/pin": {
            "post": operation("Serve one arm to everyone (a new version, recorded as an override) and freeze.",
                              json_body({"type": "object"}, "The pinned version."), errors=(404, 409, 422),
                              params=[NAME], body=decision, scope=ADMIN)},
        "/v1/experiments/{name}/ship": {
            "post": operation("End the experiment serving one arm; the impact report is stored with the decision.",
                              json_body({"type": "object"}, "The decision (without the report)."),
                              errors=(404, 409, 422), params=[NAME], body=decision, scope=ADMIN)},
        "/v1/experiments/{name}/shipped": {
            "get": operation("The ship decision with the report it was made on.",
                             json_body({"type": "object"}, "The decision."), errors=(404,), params=[NAME])},
        "/v1/experiments/{name}/freeze": {
            "post": operation("Keep serving the current version; refits skip.", frozen, errors=(404, 409),
                              params=[NAME], scope=ADMIN)},
        "/v1/experiments/{name}/unfreeze": {
            "post": operation("Let refits publish again.", frozen, errors=(404, 409), params=[NAME], scope=ADMIN)},
    }


def openapi_document(config: ServingConfig) -> dict[str, Any]:
    """The OpenAPI 3.0 document; limits in it come from ``config``."""
    member = {"name": "member_id", "in": "query", "required": True,
              "schema": {"type": "string", "minLength": 1, "maxLength": config.max_member_id_length}}
    idempotency = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "description": "A batch sent again with the same key is stored once (answer 200, duplicate: true).",
                   "schema": {"type": "string", "pattern": BATCH_ID_REGEX}}
    state_change = json_body(ref("StateChange"), "The new state.")
    not_modified = {"304": {"description": "Unchanged since the ETag sent in If-None-Match."}}
    paths: dict[str, Any] = {
        "/v1/experiments": {
            "get": operation("List experiments with state and current version.", json_body(
                {"type": "object", "properties": {"experiments": {"type": "array", "items": ref("ExperimentSummary")}}}, "Experiments.")),
            "post": operation("Launch an experiment from a spec document: spec and version 1, running, in one step.",
                              json_body({"type": "object"}, "The launched version."), errors=(409, 422),
                              body={"type": "object", "description": "An experiment spec (see bayesopt.spec)."},
                              scope=ADMIN, ok_status="201"),
        },
        "/v1/experiments/{name}": {
            "get": operation("Status: state, spec, recent activations and refit runs, the worker's cached view.",
                             json_body(ref("Status"), "Status."), errors=(404, 409), params=[NAME]),
            "delete": operation("Delete a draft experiment (one whose launch never finished).", json_body(
                {"type": "object", "properties": {"experiment": {"type": "string"}, "deleted": {"type": "boolean"}}}, "Deleted."),
                errors=(404, 409), params=[NAME], scope=ADMIN)},
        "/v1/experiments/{name}/params": {
            "get": operation("One member's sticky parameters, from the worker's memory.",
                             json_body(ref("Assignment"), "The assignment.", STALE),
                             errors=(400, 404, 409), params=[NAME, member, AT])},
        "/v1/experiments/{name}/params/batch": {
            "post": operation(f"Parameters of up to {config.max_batch} members at one instant.",
                              json_body(ref("BatchResponse"), "Assignments in request order.", STALE),
                              errors=(404, 409, 422), params=[NAME], body=ref("BatchRequest"))},
        "/v1/experiments/{name}/distribution": {
            "get": operation("The current distribution and the snapshot local clients draw from (ETag; 304 if unchanged).",
                             json_body(ref("Snapshot"), "The snapshot.", STALE), errors=(404, 409), params=[NAME],
                             extra=not_modified)},
        "/v1/experiments/{name}/observations": {
            "post": operation("Add observation rows: all or nothing, exactly once per idempotency key.",
                              json_body(ref("BatchStored"), "Stored."), errors=(404, 422), params=[NAME, idempotency],
                              body=ref("ObservationBatch"), scope=INGEST, ok_status="201",
                              extra={"200": json_body(ref("BatchStored"), "Stored before under this key; not again.")})},
        "/v1/experiments/{name}/rollback": {
            "post": operation("Publish a new version repeating an earlier one.", json_body(
                {"type": "object", "properties": {"version": {"type": "integer"}, "source_version": {"type": "integer"}}}, "Rolled back."),
                errors=(404, 409, 422), params=[NAME], scope=ADMIN,
                body={"type": "object", "required": ["version"], "properties": {"version": {"type": "integer", "minimum": 1}}})},
        "/v1/health": {"get": operation("Liveness only: the process answers (it never looks at the store).",
                                        json_body({"type": "object"}, "Alive."))},
        "/v1/ready": {"get": operation("Readiness: can serve parameters for the experiments it knows; store trouble "
                                       "and alarms are details (status degraded), not a 503.",
                                       json_body(ref("Ready"), "Ready or degraded."),
                                       extra={"503": json_body(ref("Ready"), "Not loaded from the store yet.")})},
        "/v1/openapi.json": {"get": operation("This document.", json_body({"type": "object"}, "OpenAPI 3 document."))},
        "/metrics": {"get": operation("Prometheus metrics.", {"description": "Text exposition format.",
                                                              "content": {"text/plain": {"schema": {"type": "string"}}}})},
    }
    paths.update(_analyst_paths())
    for action, verb in (("pause", "Pause: serve control to everyone."), ("resume", "Resume exploring."),
                         ("end", "End the experiment (final).")):
        paths[f"/v1/experiments/{{name}}/{action}"] = {
            "post": operation(verb, state_change, errors=(404, 409), params=[NAME], scope=ADMIN)}
    return {
        "openapi": "3.0.3",
        "info": {"title": "bayesopt serving API", "version": API_VERSION,
                 "description": "Sticky per-member parameter draws, distributions and observations."},
        "paths": paths,
        "components": {"schemas": _schemas(config), "securitySchemes": {
            "adminToken": {"type": "http", "scheme": "bearer", "description": "BAYESOPT_ADMIN_TOKEN: launch, lifecycle, rollback, delete."},
            "ingestToken": {"type": "http", "scheme": "bearer", "description": "BAYESOPT_INGEST_TOKEN: observations."}}},
    }


# The names this module used before scopes: routes written against them keep working.
_op, _json, _ref, _NAME, _AT = operation, json_body, ref, NAME, AT
