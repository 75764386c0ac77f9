"""The OpenAPI 3 document of the serving API, served at ``/v1/openapi.json`` (a test checks it covers every route)."""

from __future__ import annotations

from typing import Any

from serving.config import ServingConfig

API_VERSION = "1.0.0"

_NAME = {"name": "name", "in": "path", "required": True, "description": "Experiment name.",
         "schema": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_.-]{0,63}$"}}
_AT = {"name": "at", "in": "query", "required": False, "schema": {"type": "number"},
       "description": "Evaluate at this time (epoch seconds) instead of now: audits and tests."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Malformed request.", 401: "Admin token missing or wrong.", 404: "Unknown experiment or version.",
            409: "Conflicts with the experiment's state.", 413: "Batch or body too large.",
            422: "Validation failed; problems name each field.", 503: "Store unreachable or cache not warm."}
    return {str(s): _json(_ref("Error"), text[s]) for s in statuses}


def _op(summary: str, ok: dict[str, Any], *, errors: tuple[int, ...] = (), params: list[Any] | None = None,
        body: dict[str, Any] | None = None, admin: bool = False, ok_status: str = "200") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok_status: ok, **_errors(*errors)}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if admin:
        op["security"] = [{"adminToken": []}]
        op["tags"] = ["admin"]
    return op


def _schemas(config: ServingConfig) -> dict[str, Any]:
    number_map = {"type": "object", "additionalProperties": {"type": "number"}}
    assignment_props = {
        "member_id": {"type": "string"}, "arm_id": {"type": "string"}, "values": number_map,
        "propensity": {"type": "number", "description": "Probability of the served arm given in_experiment."},
        "in_experiment": {"type": "boolean"}, "on_control": {"type": "boolean"},
    }
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message", "problems"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "problems": {"type": "array", "items": {"type": "string"}}}}}},
        "Assignment": {"type": "object", "properties": {
            "experiment": {"type": "string"}, "version": {"type": "integer"}, **assignment_props}},
        "BatchRequest": {"type": "object", "required": ["member_ids"], "properties": {
            "member_ids": {"type": "array", "maxItems": config.max_batch, "minItems": 1,
                           "items": {"oneOf": [{"type": "string", "maxLength": config.max_member_id_length}, {"type": "integer"}]}},
            "at": {"type": "number"}}},
        "BatchResponse": {"type": "object", "properties": {
            "experiment": {"type": "string"}, "version": {"type": "integer"},
            "assignments": {"type": "array", "items": {"type": "object", "properties": assignment_props}}}},
        "Distribution": {"type": "object", "description": "ParameterDistribution.to_dict(): arms with arm_id, values, weight."},
        "Snapshot": {"type": "object", "description": "What local clients need to draw exactly as the server does.",
                     "properties": {"experiment": {"type": "string"}, "state": {"type": "string"},
                                    "experiment_share": {"type": "number"}, "stickiness_seconds": {"type": "integer"},
                                    "mode": {"type": "string", "enum": ["epoch", "coupled"]}, "horizon": {"type": "integer"},
                                    "current_version": {"type": "integer"},
                                    "versions": {"type": "array", "items": {"type": "object", "properties": {
                                        "index": {"type": "integer"}, "distribution": _ref("Distribution")}}},
                                    "distribution": _ref("Distribution")}},
        "ObservationRow": {"type": "object", "required": ["version", "arm_id", "metric"],
                           "description": "count+sum+sum_sq, count+mean+std_error, or value (one member).",
                           "properties": {k: {"type": t} for k, t in (
                               ("version", "integer"), ("arm_id", "string"), ("metric", "string"), ("source", "string"),
                               ("count", "number"), ("sum", "number"), ("sum_sq", "number"), ("mean", "number"),
                               ("std_error", "number"), ("value", "number"))}},
        "SimulatorObservationRow": {"type": "object", "required": ["source", "run", "parameters", "metric"],
                                    "description": "A simulator row (source=simulation), keyed by run and parameter "
                                                   "values; statistics as in ObservationRow.",
                                    "properties": {
                                        "source": {"type": "string", "enum": ["simulation"]}, "run": {"type": "string"},
                                        "parameters": {"type": "object", "additionalProperties": {"type": "number"}},
                                        **{k: {"type": t} for k, t in (
                                            ("metric", "string"), ("count", "number"), ("sum", "number"), ("sum_sq", "number"),
                                            ("mean", "number"), ("std_error", "number"), ("value", "number"))}}},
        "ObservationBatch": {"type": "object", "required": ["rows"],
                             "description": "All online rows, or all simulator rows.",
                             "properties": {"rows": {"type": "array", "items": {
                                 "oneOf": [_ref("ObservationRow"), _ref("SimulatorObservationRow")]}}}},
        "ExperimentSummary": {"type": "object", "properties": {
            "name": {"type": "string"}, "state": {"type": "string"}, "current_version": {"type": "integer", "nullable": True}}},
        "Status": {"type": "object", "properties": {
            "name": {"type": "string"}, "state": {"type": "string"}, "current_version": {"type": "integer"},
            "spec": {"type": "object"}, "history": {"type": "array", "items": {"type": "object"}},
            "recent_runs": {"type": "array", "items": {"type": "object"}}, "serving": {"type": "object"}}},
        "StateChange": {"type": "object", "properties": {"experiment": {"type": "string"}, "state": {"type": "string"}}},
    }


def openapi_document(config: ServingConfig) -> dict[str, Any]:
    """The OpenAPI 3.0 document; limits in it come from ``config``."""
    member = {"name": "member_id", "in": "query", "required": True,
              "schema": {"type": "string", "minLength": 1, "maxLength": config.max_member_id_length}}
    state_change = _json(_ref("StateChange"), "The new state.")
    paths: dict[str, Any] = {
        "/v1/experiments": {
            "get": _op("List experiments with state and current version.", _json(
                {"type": "object", "properties": {"experiments": {"type": "array", "items": _ref("ExperimentSummary")}}}, "Experiments.")),
            "post": _op("Launch an experiment from a spec document: store it, publish version 1, run.",
                        _json({"type": "object"}, "The launched version."), errors=(400, 401, 409, 422),
                        body={"type": "object", "description": "An experiment spec (see bayesopt.spec)."}, admin=True, ok_status="201"),
        },
        "/v1/experiments/{name}": {
            "get": _op("Status: state, spec, recent activations and refit runs, the worker's cached view.",
                       _json(_ref("Status"), "Status."), errors=(404,), params=[_NAME])},
        "/v1/experiments/{name}/params": {
            "get": _op("One member's sticky parameters.", _json(_ref("Assignment"), "The assignment."),
                       errors=(400, 404, 409), params=[_NAME, member, _AT])},
        "/v1/experiments/{name}/params/batch": {
            "post": _op(f"Parameters of up to {config.max_batch} members at one instant.",
                        _json(_ref("BatchResponse"), "Assignments in request order."), errors=(400, 404, 409, 413),
                        params=[_NAME], body=_ref("BatchRequest"))},
        "/v1/experiments/{name}/distribution": {
            "get": _op("The current distribution and the snapshot local clients draw from (ETag; 304 if unchanged).",
                       _json(_ref("Snapshot"), "The snapshot."), errors=(404,), params=[_NAME])},
        "/v1/experiments/{name}/observations": {
            "post": _op("Add observation rows (all or nothing).", _json(
                {"type": "object", "properties": {"experiment": {"type": "string"}, "accepted": {"type": "integer"}}}, "Stored."),
                errors=(400, 404, 413, 422), params=[_NAME], body=_ref("ObservationBatch"), ok_status="201")},
        "/v1/experiments/{name}/rollback": {
            "post": _op("Publish a new version repeating an earlier one.", _json(
                {"type": "object", "properties": {"version": {"type": "integer"}, "source_version": {"type": "integer"}}}, "Rolled back."),
                errors=(400, 401, 404), params=[_NAME], admin=True,
                body={"type": "object", "required": ["version"], "properties": {"version": {"type": "integer"}}})},
        "/v1/health": {"get": _op("Liveness.", _json({"type": "object"}, "Alive."))},
        "/v1/ready": {"get": _op("Readiness: Redis reachable and cache warm.", _json({"type": "object"}, "Ready."), errors=(503,))},
        "/v1/openapi.json": {"get": _op("This document.", _json({"type": "object"}, "OpenAPI 3 document."))},
        "/metrics": {"get": _op("Prometheus metrics.", {"description": "Text exposition format.",
                                                        "content": {"text/plain": {"schema": {"type": "string"}}}})},
    }
    for action, verb in (("pause", "Pause: serve control to everyone."), ("resume", "Resume exploring."),
                         ("end", "End the experiment (final).")):
        paths[f"/v1/experiments/{{name}}/{action}"] = {
            "post": _op(verb, state_change, errors=(401, 404, 409), params=[_NAME], admin=True)}
    return {
        "openapi": "3.0.3",
        "info": {"title": "bayesopt serving API", "version": API_VERSION,
                 "description": "Sticky per-member parameter draws, distributions and observations."},
        "paths": paths,
        "components": {"schemas": _schemas(config),
                       "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}}},
    }
