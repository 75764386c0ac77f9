"""The analysts' routes, kept apart from the ranker-facing API: the impact report (read) and, guarded by the
admin token, the decide-and-ship actions.

The report is :func:`param_store.reports.experiment_report`, standard-library statistics only, so answering it
loads neither numpy nor the model code.
"""

from __future__ import annotations

from flask import Blueprint, Response

from param_store.reports import experiment_report
from serving.errors import BadRequestError
from serving.http import context, json_response, query_params

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
