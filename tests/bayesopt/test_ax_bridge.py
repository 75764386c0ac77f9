"""The Ax bridge: our spec to an Ax experiment and back without loss, and refusals that name what Ax said."""

from __future__ import annotations

from pathlib import Path

import pytest
from ax.api.client import Client
from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig
from ax.storage.json_store.save import save_experiment

from bayesopt.ax_bridge import spec_from_ax, spec_to_ax
from bayesopt.errors import AxConversionError
from tests.factories import make_spec, spec_dict

SPECS = {
    "factory": spec_dict(),
    "int, absolute and minimised": spec_dict(
        "mixed", description="mixed kinds",
        parameters=[{"name": "depth", "type": "int", "lower": 1, "upper": 9},
                    {"name": "w.share", "lower": 0.001, "upper": 1.0, "log_scale": True}],
        control={"depth": 3, "w.share": 0.1},
        metrics=[{"name": "latency", "kind": "mean"}, {"name": "clicks", "kind": "rate"}, {"name": "cost"},
                 {"name": "tracked-only"}],
        objectives=[{"metric": "latency", "direction": "minimize"}],
        guardrails=[{"metric": "clicks", "lower": -0.07, "relative": True}, {"metric": "cost", "upper": 5.5}],
        traffic={"experiment_share": 0.5, "control_share": 0.3}, policy={"max_arms": 5, "seed": 7, "initial_arms": 3},
        stickiness_seconds=1800),
    "two objectives, one guarded": spec_dict(
        "moo", metrics=[{"name": "sessions", "kind": "rate"}, {"name": "applies", "kind": "rate"}, {"name": "dwell"}],
        objectives=[{"metric": "sessions"}, {"metric": "applies"}],
        guardrails=[{"metric": "applies", "lower": -0.02, "relative": True}, {"metric": "dwell", "upper": 0.03, "relative": True}]),
}


@pytest.mark.parametrize("doc", SPECS.values(), ids=SPECS.keys())
def test_a_spec_goes_to_ax_and_back_unchanged(doc: dict) -> None:
    spec = make_spec(**{k: v for k, v in doc.items()})
    assert spec_from_ax(spec_to_ax(spec)) == spec
    assert spec_from_ax(spec_to_ax(spec, reference_thresholds=True)) == spec


def test_the_round_trip_survives_axs_own_json_storage(tmp_path: Path) -> None:
    spec = make_spec(**SPECS["int, absolute and minimised"])
    save_experiment(spec_to_ax(spec), str(tmp_path / "exp.json"))
    assert spec_from_ax(tmp_path / "exp.json") == spec


def analyst_client(**optimization) -> Client:
    client = Client()
    client.configure_experiment(name="fromax", parameters=[
        RangeParameterConfig(name="x1", bounds=(0.0, 2.0), parameter_type="float"),
        RangeParameterConfig(name="n", bounds=(1, 16), parameter_type="int", scaling="log"),
    ])
    client.configure_optimization(**optimization)
    client.attach_baseline({"x1": 1.0, "n": 4})
    return client


def describe(experiment) -> dict:
    """What an Ax experiment configures, in plain values."""
    config = experiment.optimization_config
    constraints = [(c.metric_weights, c.op, c.bound, c.relative) for c in config.outcome_constraints]
    thresholds = sorted((c.metric_weights, c.op, c.bound, c.relative) for c in getattr(config, "objective_thresholds", []))
    return {
        "parameters": {n: (type(p).__name__, p.parameter_type, p.lower, p.upper, p.log_scale)
                       for n, p in experiment.search_space.parameters.items()},
        "objective": config.objective.metric_weights, "constraints": constraints, "thresholds": thresholds,
        "status_quo": experiment.status_quo.parameters, "name": experiment.name,
    }


@pytest.mark.parametrize("optimization", [
    {"objective": "sessions", "outcome_constraints": ["applies >= 0.99 * baseline", "cost <= 3.5"]},
    {"objective": "-latency, sessions", "outcome_constraints": ["applies >= 0.95 * baseline", "latency <= 250"]},
], ids=["single", "multi with a threshold"])
def test_an_ax_configuration_goes_to_a_spec_and_back_unchanged(optimization: dict) -> None:
    client = analyst_client(**optimization)
    spec = spec_from_ax(client, metric_kinds={"applies": "rate"})
    assert spec_to_ax(spec).search_space.parameters.keys() == client._experiment.search_space.parameters.keys()
    assert describe(spec_to_ax(spec)) == describe(client._experiment)
    applies = next(g for g in spec.guardrails if g.metric == "applies")
    assert applies.relative and applies.lower == pytest.approx(float(optimization["outcome_constraints"][0][11:15]) - 1)
    assert spec.control == {"x1": 1.0, "n": 4.0} and spec.metrics[[m.name for m in spec.metrics].index("applies")].kind == "rate"


def test_what_the_service_cannot_express_is_refused_by_name() -> None:
    client = Client()
    client.configure_experiment(name="bad", parameters=[
        RangeParameterConfig(name="x1", bounds=(0.0, 2.0), parameter_type="float"),
        RangeParameterConfig(name="x2", bounds=(0.0, 2.0), parameter_type="float"),
        ChoiceParameterConfig(name="ranker", values=["a", "b"], parameter_type="str"),
    ], parameter_constraints=["x1 + x2 <= 3"])
    client.configure_optimization(objective="2 * sessions + applies", outcome_constraints=["cost + latency <= 4"])
    with pytest.raises(AxConversionError) as info:
        spec_from_ax(client)
    problems = "\n".join(info.value.problems)
    assert "parameters.ranker: ChoiceParameter is not supported" in problems
    assert "parameter_constraints: 1 constraint(s)" in problems
    assert "objective: '2 * sessions + applies' scalarizes metrics" in problems
    assert "combines metrics" in problems
    assert "status_quo: is required" in problems


def test_a_relative_constraint_without_a_baseline_says_it_needs_one() -> None:
    client = Client()
    client.configure_experiment(name="nosq", parameters=[RangeParameterConfig(name="x1", bounds=(0.0, 2.0), parameter_type="float")])
    client.configure_optimization(objective="sessions", outcome_constraints=["applies >= 0.99 * baseline"])
    with pytest.raises(AxConversionError, match="relative constraints on applies need it too"):
        spec_from_ax(client)
    spec = spec_from_ax(client, control={"x1": 0.5})
    assert spec.control == {"x1": 0.5}


def test_unknown_metric_kinds_and_missing_files_are_named(tmp_path: Path) -> None:
    client = analyst_client(objective="sessions")
    with pytest.raises(AxConversionError, match="metric_kinds.nope: not a metric"):
        spec_from_ax(client, metric_kinds={"nope": "rate"})
    with pytest.raises(AxConversionError, match="cannot read"):
        spec_from_ax(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(AxConversionError, match="neither an Ax Client snapshot"):
        spec_from_ax(tmp_path / "other.json")
