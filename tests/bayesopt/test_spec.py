"""Experiment spec: loading from every format, validation naming each field, a stable hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bayesopt import ExperimentSpec, SpecValidationError
from tests.factories import spec_dict

DATA = Path(__file__).parent.parent / "data"
EXAMPLE = Path(__file__).parents[2] / "simulations" / "specs" / "feed_example.yaml"


def test_loads_from_dict_json_and_yaml_alike(tmp_path: Path) -> None:
    doc = spec_dict()
    (tmp_path / "s.json").write_text(json.dumps(doc))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    specs = [ExperimentSpec.from_dict(doc), ExperimentSpec.load(tmp_path / "s.json"), ExperimentSpec.load(str(tmp_path / "s.yaml")), ExperimentSpec.load(json.dumps(doc))]
    assert all(s == specs[0] for s in specs)
    assert len({s.spec_hash for s in specs}) == 1


def test_json_round_trip_is_exact() -> None:
    spec = ExperimentSpec.from_file(EXAMPLE)
    again = ExperimentSpec.from_json(spec.to_json())
    assert again == spec and again.to_json() == spec.to_json()


def test_hash_changes_with_content_and_not_with_key_order() -> None:
    doc = spec_dict()
    reordered = dict(reversed(list(doc.items())))
    assert ExperimentSpec.from_dict(doc).spec_hash == ExperimentSpec.from_dict(reordered).spec_hash
    changed = spec_dict(control={"x1": 1.5, "x2": 1.0})
    assert ExperimentSpec.from_dict(changed).spec_hash != ExperimentSpec.from_dict(doc).spec_hash


def test_defaults() -> None:
    spec = ExperimentSpec.from_dict(spec_dict())
    assert spec.stickiness_seconds == 3600
    assert spec.refit.cron == "0 * * * *"
    assert spec.guardrails[0].is_lower and spec.guardrails[0].relative and spec.guardrails[0].bound == -0.01


def test_every_problem_is_reported_with_its_path() -> None:
    doc = spec_dict(
        guardrails=[{"metric": "applies", "lower": -0.01, "relative": True}, {"metric": "jobs", "upper": 3}],
        traffic={"control_share": 1.5, "experiment_share": 0},
        parameters=[{"name": "x1", "lower": 2.0, "upper": 1.0}, {"name": "x2", "lower": -1, "upper": 1, "log_scale": True}],
        objectives=[{"metric": "sessions", "direction": "up"}],
    )
    with pytest.raises(SpecValidationError) as err:
        ExperimentSpec.from_dict(doc)
    problems = err.value.problems
    expected = [
        "guardrails[1].metric: unknown metric 'jobs'",
        "traffic.control_share: must be in (0, 1)",
        "traffic.experiment_share: must be in (0, 1]",
        "parameters[0].upper: must be greater than lower",
        "parameters[1].lower: must be positive on a log scale",
        "objectives[0].direction: must be one of",
    ]
    for fragment in expected:
        assert any(p.startswith(fragment) for p in problems), (fragment, problems)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"name": "bad name!"}, "name: must be a name of 1 to 64 letters"),
        ({"control": {"x1": 5.0, "x2": 1.0}}, "control.x1: 5.0 is outside the bounds [0.0, 2.0]"),
        ({"control": {"x1": 1.0}}, "control.x2: is required"),
        ({"guardrails": [{"metric": "applies"}]}, "guardrails[0]: set exactly one of 'lower'"),
        ({"guardrails": [{"metric": "applies", "lower": 1, "upper": 2}]}, "guardrails[0]: set exactly one"),
        ({"stickiness_seconds": 0}, "stickiness_seconds: must be a positive integer"),
        ({"refit": {"cron": "hourly"}}, "refit.cron: must be a 5-field cron"),
        ({"policy": {"max_arms": 0}}, "policy.max_arms: must be an integer in [2, 256]"),
        ({"policy": {"method": "magic"}}, "policy.method: must be"),
        ({"colour": "blue"}, "colour: unknown field"),
        ({"simulator_metrics": ["nope"]}, "simulator_metrics[0]: unknown metric 'nope'"),
        ({"metrics": [{"name": "sessions", "kind": "weird"}, "applies"]}, "metrics[0].kind: must be one of"),
    ],
)
def test_single_problem_messages(overrides: dict, fragment: str) -> None:
    with pytest.raises(SpecValidationError) as err:
        ExperimentSpec.from_dict(spec_dict(**overrides))
    assert any(fragment in p for p in err.value.problems), err.value.problems


def test_unreadable_or_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SpecValidationError, match="cannot read"):
        ExperimentSpec.from_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(SpecValidationError, match="not valid YAML"):
        ExperimentSpec.from_file(tmp_path / "bad.yaml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(SpecValidationError, match="expected a mapping"):
        ExperimentSpec.from_file(tmp_path / "list.json")


def test_committed_schema_v1_document_still_loads() -> None:
    spec = ExperimentSpec.from_file(DATA / "spec_v1.json")
    assert spec.name == "feed_v1" and spec.parameter_names == ["share_weight", "apply_weight"]
    assert spec.spec_hash == (DATA / "spec_v1.hash").read_text().strip()
