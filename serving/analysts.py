"""The analysts' routes, kept apart from the ranker-facing API: the impact report (read) and, guarded by the
admin token, the decide-and-ship actions.

The report is :func:`param_store.reports.experiment_report`, standard-library statistics only, so answering it
loads neither numpy nor the model code.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from param_store import VersionNotFoundError, decisions
from param_store.reports import experiment_report
from serving.auth import ADMIN, requires
from serving.errors import BadRequestError
from serving.http import context, json_response, query_params, read_json_object

blueprint = Blueprint("analysts", __name__, url_prefix="/v1/experiments")


@blueprint.get("/<name>/report")
def report(name: str) -> Response:
    raw = query_params().get("confidence", "0.95")
    try:
        confidence = float(raw)
    except ValueError:
        confidence = float("nan")
    if not 0 < confidence < 1:
        raise BadRequestError(f"confidence: must be a number in (0, 1), got {raw!r}",
                              problems=[f"confidence: must be in (0, 1), got {raw!r}"])
    return json_response(experiment_report(context().store, name, confidence=confidence))


def _text(doc: dict, key: str, *, required: bool) -> str:
    value = doc.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value):
        raise BadRequestError(f"{key}: must be a {'non-empty ' if required else ''}string, got {value!r}",
                              problems=[f"{key}: invalid {value!r}"])
    return value


@blueprint.post("/<name>/pin")
@requires(ADMIN)
def pin(name: str) -> Response:
    ctx = context()
    doc = read_json_object()
    dist = decisions.pin(ctx.store, name, _text(doc, "arm_id", required=True), reason=_text(doc, "reason", required=False),
                         by="http")
    ctx.cache.load(name, trigger="admin")
    return json_response({"experiment": name, "version": dist.version, "arm_id": dist.control_arm_id, "frozen": True})


@blueprint.post("/<name>/ship")
@requires(ADMIN)
def ship(name: str) -> Response:
    ctx = context()
    doc = read_json_object()
    decision = decisions.ship(ctx.store, name, _text(doc, "arm_id", required=True),
                              reason=_text(doc, "reason", required=False), by="http")
    ctx.cache.load(name, trigger="admin")
    return json_response({"experiment": name, **{k: v for k, v in decision.items() if k != "report"}})


@blueprint.get("/<name>/shipped")
def shipped(name: str) -> Response:
    store = context().store
    store.load_spec(name)  # 404 for an unknown experiment
    decision = store.shipped(name)
    if decision is None:
        raise VersionNotFoundError(f"{name!r} has not been shipped")
    return json_response(decision)


def _freeze_view(frozen: bool):
    @requires(ADMIN)
    def view(name: str) -> Response:
        ctx = context()
        if frozen:
            body = read_json_object() if request.get_data(cache=True) else {}
            decisions.freeze(ctx.store, name, reason=_text(body, "reason", required=False), by="http")
        else:
            decisions.unfreeze(ctx.store, name)
        return json_response({"experiment": name, "frozen": frozen, "current_version": ctx.store.current_version(name)})

    return view


for _action, _frozen in (("freeze", True), ("unfreeze", False)):
    blueprint.add_url_rule(f"/<name>/{_action}", endpoint=_action, view_func=_freeze_view(_frozen), methods=["POST"])
