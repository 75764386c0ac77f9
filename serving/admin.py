"""Experiment list and status (read from the store, not the cache) and the admin actions.

Launching is :func:`param_store.launch.launch_experiment`, the same function ``bayesopt launch`` calls. Admin
actions reload this worker's cache at once; other workers follow through the publish announcement
(launch, rollback) or their state poll (pause, resume, end), within ``poll_interval_s``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from param_store import ExperimentState, ParamStore
from param_store.launch import launch_experiment  # light: the design (scipy) loads inside, at a launch
from serving.auth import ADMIN, requires
from serving.errors import BadRequestError
from serving.http import context, json_response, read_json_object

blueprint = Blueprint("admin", __name__, url_prefix="/v1/experiments")

#: Recent refit run records shown in a status document (the issue's ``store.runs(name, 5)``).
STATUS_RUNS = 5
#: Activations listed in a status document, newest last.
STATUS_HISTORY = 10
TRANSITIONS = {"pause": ExperimentState.PAUSED, "resume": ExperimentState.RUNNING, "end": ExperimentState.ENDED}


@blueprint.get("")
def list_experiments() -> Response:
    store = context().store
    out = []
    for name in store.list_experiments():
        out.append({"name": name, "state": store.state(name).value, "current_version": store.current_version(name)})
    return json_response({"experiments": out})


@blueprint.get("/<name>")
def status(name: str) -> Response:
    ctx = context()
    return json_response(status_document(ctx.store, name, serving=ctx.cache.get(name)))


def status_document(store: ParamStore, name: str, *, serving: Any) -> dict[str, Any]:
    spec = store.load_spec(name)
    history = store.history(name)
    return {
        "name": name,
        "state": store.state(name).value,
        "current_version": store.current_version(name),
        "spec": spec.to_dict(),
        "history": [{"version": v, "activated_at": t} for v, t in history[-STATUS_HISTORY:]],
        "recent_runs": store.runs(name, STATUS_RUNS),
        "serving": {
            "mode": serving.mode,
            "horizon": serving.horizon,
            "cached_version": serving.current_version,
            "cached_state": serving.state,
        },
    }


@blueprint.post("")
@requires(ADMIN)
def launch() -> Response:
    ctx = context()

    dist = launch_experiment(ctx.store, read_json_object())
    ctx.cache.forget_unknown(dist.experiment)
    ctx.cache.load(dist.experiment, trigger="admin")
    return json_response({"experiment": dist.experiment, "version": dist.version, "distribution": dist.to_dict()}, status=201)


@blueprint.delete("/<name>")
@requires(ADMIN)
def delete_draft(name: str) -> Response:
    ctx = context()
    ctx.store.delete_draft(name)
    ctx.cache.drop(name)
    return json_response({"experiment": name, "deleted": True})


@blueprint.post("/<name>/rollback")
@requires(ADMIN)
def rollback(name: str) -> Response:
    ctx = context()
    version = read_json_object().get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BadRequestError(f"version: must be a positive integer, got {version!r}", problems=[f"version: invalid {version!r}"])
    dist = ctx.store.rollback(name, version)
    ctx.cache.load(name, trigger="admin")
    return json_response({"experiment": name, "version": dist.version, "source_version": version})


def _transition_view(target: ExperimentState):
    @requires(ADMIN)
    def view(name: str) -> Response:
        ctx = context()
        state = ctx.store.transition(name, target)
        ctx.cache.load(name, trigger="admin")
        return json_response({"experiment": name, "state": state.value})

    return view


for _action, _target in TRANSITIONS.items():
    blueprint.add_url_rule(f"/<name>/{_action}", endpoint=_action, view_func=_transition_view(_target), methods=["POST"])
