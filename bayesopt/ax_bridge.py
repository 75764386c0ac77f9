"""The Ax bridge: an Ax experiment's configuration as our :class:`~bayesopt.spec.ExperimentSpec`, and back.

An analyst configures an Ax ``Client`` (or a core ``Experiment``) as for any Ax experiment: range parameters,
an objective or several, outcome constraints (absolute, or relative to the status quo as ``m >= 0.99 *
baseline``) and a status-quo arm, which becomes our control. :func:`spec_from_ax` reads that configuration;
:func:`spec_to_ax` writes a spec as an Ax ``Experiment``. The two are inverses:

- ``spec_from_ax(spec_to_ax(spec)) == spec``: what Ax has no words for (metric kinds, traffic, refit, policy,
  stickiness, simulator metrics, description) travels in ``experiment.properties["bayesopt"]``;
- ``spec_to_ax(spec_from_ax(experiment))`` has the same search space, objectives, constraints and status quo.

What Ax can say and we cannot is refused with an :class:`~bayesopt.errors.AxConversionError` naming each thing:
choice, fixed and derived parameters, parameter constraints, logit scales, rounding digits, fidelities,
scalarized objectives and constraints, a missing status quo.

Relative limits: Ax writes a relative bound in percent of the status quo (``-1.0`` for "at most 1% below"); our
guardrails write the fraction (``-0.01``).

This module imports ax; the service's serving and store code never import it.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ax.api.client import Client
from ax.core.arm import Arm as AxArm
from ax.core.experiment import Experiment
from ax.core.metric import Metric as AxMetric
from ax.core.objective import Objective
from ax.core.optimization_config import MultiObjectiveOptimizationConfig, OptimizationConfig
from ax.core.outcome_constraint import ComparisonOp, OutcomeConstraint, ScalarizedOutcomeConstraint
from ax.core.parameter import ParameterType, RangeParameter
from ax.core.search_space import SearchSpace

from bayesopt.distribution import CONTROL_ARM_ID
from bayesopt.errors import AxConversionError
from bayesopt.spec import ExperimentSpec

#: Key of ``experiment.properties`` that carries what Ax has no field for.
PROPERTIES_KEY = "bayesopt"
PROPERTIES_SCHEMA = 1
#: Ax writes relative bounds in percent of the status quo; guardrails write fractions.
PERCENT = 100.0
#: Decimals kept of a relative limit read from Ax's percent (Ax itself rounds percent bounds to 10 decimals), so
#: ``0.07 -> 7.000000000000001% -> 0.07`` comes back exactly.
RELATIVE_DIGITS = 12

AxSource = Experiment | Client | str | Path


# -- spec -> Ax ------------------------------------------------------------------------------------------------
def spec_to_ax(spec: ExperimentSpec, *, reference_thresholds: bool = False) -> Experiment:
    """The Ax ``Experiment`` of ``spec``: search space, status quo (control), optimization config, metrics.

    Args:
        spec: the experiment spec.
        reference_thresholds: with several objectives, give every objective that has no guardrail of its own an
            objective threshold "no worse than control" (relative, 0%), so that Ax's Pareto frontier is never
            empty for want of a reference point. They are marked in the properties, and :func:`spec_from_ax`
            drops them again.

    Raises:
        AxConversionError: a single-objective spec guards its own objective metric (Ax forbids it).
    """
    parameters = [
        RangeParameter(name=p.name, parameter_type=ParameterType.INT if p.type == "int" else ParameterType.FLOAT,
                       lower=_cast(p.type, p.lower), upper=_cast(p.type, p.upper), log_scale=p.log_scale)
        for p in spec.parameters
    ]
    control = {p.name: _cast(p.type, spec.control[p.name]) for p in spec.parameters}
    config, added = _optimization_config(spec, reference_thresholds)
    used = set(config.metric_names)
    properties = {PROPERTIES_KEY: {"schema_version": PROPERTIES_SCHEMA, "spec": spec.to_dict(),
                                   "reference_thresholds": added}}
    experiment = Experiment(
        name=spec.name, search_space=SearchSpace(parameters=parameters), optimization_config=config,
        status_quo=AxArm(parameters=control, name=CONTROL_ARM_ID), description=spec.description or None,
        tracking_metrics=[AxMetric(name=m) for m in spec.metric_names if m not in used],
        properties=properties,
    )
    return experiment


def _cast(kind: str, value: float) -> int | float:
    return int(value) if kind == "int" else float(value)


def _objective_expression(metric: str, direction: str) -> str:
    return f"-{metric}" if direction == "minimize" else metric


def _constraint(metric: str, *, is_lower: bool, bound: float, relative: bool) -> OutcomeConstraint:
    op = ComparisonOp.GEQ if is_lower else ComparisonOp.LEQ
    ax_metric = AxMetric(name=metric)
    ax_bound = bound * PERCENT if relative else bound
    with warnings.catch_warnings():  # the metric/op/bound form is deprecated but takes any metric name verbatim
        warnings.simplefilter("ignore", DeprecationWarning)
        return OutcomeConstraint(metric=ax_metric, op=op, bound=ax_bound, relative=relative)


def _optimization_config(spec: ExperimentSpec, reference_thresholds: bool) -> tuple[OptimizationConfig, list[str]]:
    objectives = [Objective(expression=_objective_expression(o.metric, o.direction),
                            metric_name_to_signature={o.metric: o.metric},
                            _parsed=([o.metric], [[(o.metric, -1.0 if o.direction == "minimize" else 1.0)]]))
                  for o in spec.objectives]
    objective_metrics = {o.metric for o in spec.objectives}
    constraints = [_constraint(g.metric, is_lower=g.is_lower, bound=g.bound, relative=g.relative) for g in spec.guardrails
                   if g.metric not in objective_metrics]
    if len(objectives) == 1:
        own = [g.metric for g in spec.guardrails if g.metric in objective_metrics]
        if own:
            raise AxConversionError(f"guardrails: {own[0]!r} is the objective; Ax allows no outcome constraint on "
                                    "the objective metric of a single-objective experiment")
        return OptimizationConfig(objective=objectives[0], outcome_constraints=constraints), []
    thresholds = [_constraint(g.metric, is_lower=g.is_lower, bound=g.bound, relative=g.relative)
                  for g in spec.guardrails if g.metric in objective_metrics]
    added = []
    if reference_thresholds:
        guarded = {g.metric for g in spec.guardrails}
        for o in spec.objectives:
            if o.metric not in guarded:
                thresholds.append(_constraint(o.metric, is_lower=o.direction == "maximize", bound=0.0, relative=True,
                                              ))
                added.append(o.metric)
    expression = ", ".join(_objective_expression(o.metric, o.direction) for o in spec.objectives)
    parsed = ([o.metric for o in spec.objectives],
              [[(o.metric, -1.0 if o.direction == "minimize" else 1.0)] for o in spec.objectives])
    objective = Objective(expression=expression, metric_name_to_signature={o.metric: o.metric for o in spec.objectives},
                          _parsed=parsed)
    config = MultiObjectiveOptimizationConfig(objective=objective,
                                              outcome_constraints=constraints, objective_thresholds=thresholds)
    return config, added


# -- Ax -> spec ------------------------------------------------------------------------------------------------
def load_ax_experiment(source: AxSource) -> Experiment:
    """The Ax experiment in ``source``: an ``Experiment``, a ``Client``, or a JSON file that either
    ``Client.save_to_json_file`` or ``ax.storage.json_store.save.save_experiment`` wrote."""
    if isinstance(source, Experiment):
        return source
    if isinstance(source, Client):
        return source._experiment  # noqa: SLF001 - the Client's only way to hand its experiment over
    path = Path(source)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise AxConversionError(f"(file) {path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise AxConversionError(f"(file) {path}: not valid JSON: {exc}") from None
    if isinstance(doc, dict) and doc.get("_type") == "Client":
        return Client.load_from_json_file(str(path))._experiment  # noqa: SLF001
    if isinstance(doc, dict) and doc.get("__type") == "Experiment":
        from ax.storage.json_store.load import load_experiment

        return load_experiment(str(path))
    raise AxConversionError(f"(file) {path}: neither an Ax Client snapshot (Client.save_to_json_file) nor an Ax "
                            "experiment (ax.storage.json_store.save.save_experiment)")


def spec_from_ax(
    source: AxSource,
    *,
    name: str | None = None,
    metric_kinds: Mapping[str, str] | None = None,
    control: Mapping[str, float] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentSpec:
    """Our spec for an Ax experiment's configuration.

    Args:
        source: an Ax ``Client``, ``Experiment`` or saved JSON file (see :func:`load_ax_experiment`).
        name: the experiment's name (default: the Ax experiment's).
        metric_kinds: ``{metric: "rate" | "mean"}``; unnamed metrics keep the kind stored with the experiment
            (by :func:`spec_to_ax`), else ``mean``.
        control: control's parameter values, for an Ax experiment without a status quo.
        overrides: top-level spec fields to set (``traffic``, ``policy``, ``refit``...), for what Ax cannot say.

    Raises:
        AxConversionError: naming everything Ax says that the service cannot express.
        SpecValidationError: the resulting spec is invalid (a bad name, a control outside the bounds...).
    """
    experiment = load_ax_experiment(source)
    stored = _stored(experiment)
    base = dict(stored.get("spec") or {})
    problems: list[str] = []
    parameters = _parameters(experiment, problems)
    objectives, guardrails = _goals(experiment, set(stored.get("reference_thresholds") or ()), problems)
    control_values = _control(experiment, control, parameters, guardrails, problems)
    if problems:
        raise AxConversionError(problems)
    metric_names = _metric_names(experiment, objectives, guardrails)
    kinds = {m["name"]: m.get("kind", "mean") for m in base.get("metrics", [])}
    kinds.update(metric_kinds or {})
    unknown = sorted(set(metric_kinds or {}) - set(metric_names))
    if unknown:
        raise AxConversionError([f"metric_kinds.{m}: not a metric of the Ax experiment ({', '.join(metric_names)})"
                                 for m in unknown])
    derived = {
        "name": name or experiment.name,
        "parameters": parameters,
        "control": control_values,
        "metrics": [{"name": m, "kind": kinds.get(m, "mean")} for m in metric_names],
        "objectives": objectives,
        "guardrails": guardrails,
    }
    if experiment.description:
        derived["description"] = experiment.description
    if not derived["name"]:
        raise AxConversionError("name: the Ax experiment has no name; pass name=... (--name)")
    doc = {**base, **{k: _keep_order(base.get(k), v) for k, v in derived.items()}, **dict(overrides or {})}
    return ExperimentSpec.from_dict(doc)


def _stored(experiment: Experiment) -> dict[str, Any]:
    stored = (experiment._properties or {}).get(PROPERTIES_KEY)  # noqa: SLF001 - Ax serialises it, has no getter
    if isinstance(stored, Mapping) and stored.get("schema_version") == PROPERTIES_SCHEMA:
        return dict(stored)
    return {}


def _keep_order(stored: Any, derived: Any) -> Any:
    """``derived``, in the stored document's order when both hold the same items (lists of dicts or names)."""
    if not isinstance(stored, list) or not isinstance(derived, list) or len(stored) != len(derived):
        return derived
    canon = [json.dumps(x, sort_keys=True) for x in derived]
    if sorted(canon) == sorted(json.dumps(_normal(x), sort_keys=True) for x in stored):
        return [derived[canon.index(json.dumps(_normal(x), sort_keys=True))] for x in stored]
    return derived


def _normal(item: Any) -> Any:
    """A stored spec list item in the shape this module derives (no null limits, floats as floats)."""
    if not isinstance(item, Mapping):
        return item
    return {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in item.items() if v is not None}


def _parameters(experiment: Experiment, problems: list[str]) -> list[dict[str, Any]]:
    space = experiment.search_space
    out = []
    for pname, p in space.parameters.items():
        path = f"parameters.{pname}"
        if not isinstance(p, RangeParameter):
            problems.append(f"{path}: {type(p).__name__} is not supported; the service tunes range parameters "
                            "(float or int) only")
            continue
        for attr, why in (("logit_scale", "a logit scale"), ("is_fidelity", "a fidelity parameter"),
                          ("digits", "rounding digits")):
            if getattr(p, attr, None):
                problems.append(f"{path}: {why} is not supported")
        kind = "int" if p.parameter_type == ParameterType.INT else "float"
        out.append({"name": pname, "type": kind, "lower": float(p.lower), "upper": float(p.upper),
                    "log_scale": bool(p.log_scale)})
    if space.parameter_constraints:
        problems.append(f"parameter_constraints: {len(space.parameter_constraints)} constraint(s) "
                        f"({'; '.join(str(c) for c in space.parameter_constraints)}) are not supported; the service "
                        "searches a box")
    return out


def _single_metric(constraint: OutcomeConstraint) -> str | None:
    weights = constraint.metric_weights
    return weights[0][0] if len(weights) == 1 and weights[0][1] == 1 else None


def _goals(experiment: Experiment, reference: set[str], problems: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    config = experiment.optimization_config
    if config is None:
        problems.append("optimization_config: is required (Client.configure_optimization)")
        return [], []
    objective = config.objective
    objectives = []
    for sub in objective._parsed[1]:  # noqa: SLF001 - the only view of a multi-objective's parts by metric name
        if len(sub) != 1 or abs(sub[0][1]) != 1:
            problems.append(f"objective: {objective.expression!r} scalarizes metrics; the service optimises single "
                            "metrics (several make a multi-objective experiment)")
            continue
        metric, weight = sub[0]
        objectives.append({"metric": metric, "direction": "minimize" if weight < 0 else "maximize"})
    guardrails = []
    thresholds = list(getattr(config, "objective_thresholds", None) or [])
    tagged = [(c, False) for c in config.outcome_constraints] + [(c, True) for c in thresholds]
    for constraint, is_threshold in tagged:
        metric = _single_metric(constraint)
        if isinstance(constraint, ScalarizedOutcomeConstraint) or metric is None:
            problems.append(f"outcome_constraints: {constraint.expression!r} combines metrics; the service guards "
                            "one metric per constraint")
            continue
        if is_threshold and metric in reference and constraint.relative and constraint.bound == 0:
            continue
        key = "lower" if constraint.op == ComparisonOp.GEQ else "upper"
        bound = round(constraint.bound / PERCENT, RELATIVE_DIGITS) if constraint.relative else float(constraint.bound)
        guardrails.append({"metric": metric, key: float(bound), "relative": bool(constraint.relative)})
    return objectives, guardrails


def _control(experiment: Experiment, control: Mapping[str, float] | None, parameters: list[dict[str, Any]],
             guardrails: list[dict[str, Any]], problems: list[str]) -> dict[str, float]:
    if control is not None:
        return {k: float(v) for k, v in control.items()}
    sq = experiment.status_quo
    if sq is None:
        relative = [g["metric"] for g in guardrails if g["relative"]]
        why = f" (the relative constraints on {', '.join(relative)} need it too)" if relative else ""
        problems.append("status_quo: is required: the service serves a control arm in every window" + why
                        + "; set one with Client.attach_baseline(parameters) or pass control=... (--control)")
        return {}
    names = {p["name"] for p in parameters}
    return {k: float(v) for k, v in sq.parameters.items() if k in names and _finite(v)}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _metric_names(experiment: Experiment, objectives: list[dict[str, Any]], guardrails: list[dict[str, Any]]) -> list[str]:
    names = [o["metric"] for o in objectives] + [g["metric"] for g in guardrails]
    return list(dict.fromkeys(names + [m.name for m in experiment.tracking_metrics]))
