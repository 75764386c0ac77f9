"""Experiment spec: loading from every format, validation naming each field, a stable hash."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import yaml

from bayesopt import (
    ExperimentSpec,
    Guardrail,
    Metric,
    Objective,
    Parameter,
    PolicySettings,
    Refit,
    SpecValidationError,
    Traffic,
)
from bayesopt.spec import MAX_ARMS, MAX_CANDIDATES, MAX_DRAWS, MAX_SAMPLING_WORK, NAME_PATTERN
from tests.factories import BAD_SPEC_VALUES, make_spec, spec_dict, spec_dict_with

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


# -- validation at construction: every record checks itself, so dataclasses.replace cannot build a bad spec --


def _refusal(build) -> list[str]:
    with pytest.raises(SpecValidationError) as err:
        build()
    return err.value.problems


def _replace_at(spec: ExperimentSpec, path: str, value):
    """``dataclasses.replace`` on the record that holds ``path``; returns the path that record names."""
    if path.startswith("guardrails[0]."):
        key = path.split(".")[-1]
        return (lambda: dataclasses.replace(spec.guardrails[0], **{key: value})), f"guardrail.{key}"
    if "." in path:
        section, key = path.split(".")
        return (lambda: dataclasses.replace(getattr(spec, section), **{key: value})), path
    return (lambda: dataclasses.replace(spec, **{path: value})), path


@pytest.mark.parametrize(("path", "value"), BAD_SPEC_VALUES, ids=[p for p, _ in BAD_SPEC_VALUES])
def test_each_bad_value_is_refused_naming_its_field(path: str, value) -> None:
    problems = _refusal(lambda: ExperimentSpec.from_dict(spec_dict_with(path, value)))
    assert len(problems) == 1 and problems[0].startswith(f"{path}: "), problems
    build, named = _replace_at(make_spec(), path, value)
    problems = _refusal(build)
    assert len(problems) == 1 and problems[0].startswith(f"{named}: "), problems


def test_the_messages_say_what_to_write_instead() -> None:
    [cron] = _refusal(lambda: make_spec(refit={"cron": "99 * * * *"}))
    assert cron == "refit.cron: '99 * * * *': minute '99' is out of range 0-59"
    [arms] = _refusal(lambda: make_spec(policy={"max_arms": 8, "initial_arms": 2**40}))
    assert arms.startswith("policy.initial_arms: must be an integer in [1, 7]") and arms.endswith(f"got {2**40}")
    [draws] = _refusal(lambda: make_spec(policy={"num_draws": 10**12}))
    assert draws.startswith(f"policy.num_draws: must be an integer in [1, {MAX_DRAWS}]")
    [seed] = _refusal(lambda: make_spec(policy={"seed": -1}))
    assert seed.startswith(f"policy.seed: must be an integer in [0, {2**31 - 1}]") and seed.endswith("got -1")
    [name] = _refusal(lambda: make_spec("feed\n"))
    assert name.startswith("name: must be a name of 1 to 64 letters") and name.endswith("got 'feed\\n'")
    [lower] = _refusal(lambda: make_spec(guardrails=[{"metric": "applies", "lower": -5, "relative": True}]))
    assert lower == ("guardrails[0].lower: -5 is a relative change of -500%; relative limits are fractions "
                     "in (-1, 1): for -5% write -0.05")
    [upper] = _refusal(lambda: make_spec(guardrails=[{"metric": "applies", "upper": 2.5, "relative": True}]))
    assert upper.endswith("2.5 is a relative change of +250%; relative limits are fractions in (-1, 1): for +2.5% write 0.025")


@pytest.mark.parametrize("limit", [-1.0, 1.0, -0.999, 0.5])
def test_relative_limits_are_open_fractions_and_absolute_ones_any_number(limit: float) -> None:
    relative = {"guardrails": [{"metric": "applies", "lower": limit, "relative": True}]}
    if -1 < limit < 1:
        assert make_spec(**relative).guardrails[0].lower == limit
    else:
        assert _refusal(lambda: make_spec(**relative))[0].startswith("guardrails[0].lower: ")
    assert make_spec(guardrails=[{"metric": "applies", "lower": limit * 5}]).guardrails[0].bound == limit * 5


@pytest.mark.parametrize("where", ["name", "parameters", "metrics", "objectives", "guardrails", "simulator_metrics"])
def test_names_are_matched_in_full(where: str) -> None:
    doc = spec_dict()
    if where == "name":
        doc["name"], path = "feed\n", "name"
    elif where == "parameters":
        doc["parameters"][0]["name"], path = "x1\n", "parameters[0].name"
    elif where == "metrics":
        doc["metrics"][0]["name"], path = "sessions\n", "metrics[0].name"
    elif where == "objectives":
        doc["objectives"][0]["metric"], path = "sessions\n", "objectives[0].metric"
    elif where == "guardrails":
        doc["guardrails"][0]["metric"], path = "applies\n", "guardrails[0].metric"
    else:
        doc["simulator_metrics"], path = ["applies\n"], "simulator_metrics[0]"
    assert any(p.startswith(f"{path}: ") for p in _refusal(lambda: ExperimentSpec.from_dict(doc)))
    assert NAME_PATTERN.match("feed\n") is None and NAME_PATTERN.match("a" * 65) is None


@pytest.mark.parametrize(
    ("cron", "fragment"),
    [
        ("99 * * * *", "minute '99' is out of range 0-59"),
        ("0 24 * * *", "hour '24' is out of range 0-23"),
        ("0 0 0 * *", "day of month '0' is out of range 1-31"),
        ("0 0 * 13 *", "month '13' is out of range 1-12"),
        ("0 0 * * 8", "day of week '8' is out of range 0-7 (0 and 7 are Sunday)"),
        ("0-70 * * * *", "minute '0-70' is out of range 0-59"),
        ("1,2,61 * * * *", "minute '61' is out of range 0-59"),
        ("*/0 * * * *", "minute step in '*/0' must be between 1 and 59, got 0"),
        ("*/90 * * * *", "minute step in '*/90' must be between 1 and 59, got 90"),
        ("30-10 * * * *", "minute range '30-10' runs backwards"),
        ("0 0 * * mon-xyz", "day of week 'xyz' is not a number or a name"),
        ("0 0 L * *", "day of month 'L' is not a number"),
        ("0 0 ? * *", "day of month '?' is not a value, range, list or step"),
        ("0 0 30 2 *", "never fires: day(s) of month 30 never fall in month(s) feb"),
        ("0 0 29 2 *", "fires less than once a year (up to 1461 days apart)"),
        ("0 0 1 * 1", "restrict the day of month ('1') or the day of week ('1'), not both"),
        ("@hourly", "must be a 5-field cron expression"),
        ("0 * * *", "must be a 5-field cron expression"),
    ],
)
def test_cron_expressions_are_parsed_in_full(cron: str, fragment: str) -> None:
    problems = _refusal(lambda: Refit(cron=cron))
    assert len(problems) == 1 and problems[0].startswith("refit.cron: ") and fragment in problems[0], problems


@pytest.mark.parametrize("cron", ["0 * * * *", "*/15 * * * *", "5 9-17/2 * * mon-fri", "0 0 1 jan,jul *", "0 0 31 * *",
                                  "0 3 * * 0", "0 3 * * 7", "0,30 * * * SUN"])
def test_valid_cron_expressions_pass(cron: str) -> None:
    assert make_spec(refit={"cron": cron}).refit.cron == cron


def test_bounds_are_inclusive_and_named_constants() -> None:
    edge = {"max_arms": MAX_ARMS, "initial_arms": MAX_ARMS - 1, "num_draws": MAX_DRAWS,
            "num_candidates": MAX_SAMPLING_WORK // MAX_DRAWS, "seed": 2**31 - 1, "grid_levels": 1025}
    assert make_spec(policy=edge).policy.seed == 2**31 - 1
    beyond = [("max_arms", MAX_ARMS + 1), ("max_arms", 1), ("num_draws", MAX_DRAWS + 1), ("num_draws", 0),
              ("num_candidates", MAX_CANDIDATES + 1), ("seed", 2**31), ("grid_levels", 1026), ("initial_arms", 0)]
    for key, value in beyond:
        problems = _refusal(lambda policy={**edge, key: value}: make_spec(policy=policy))
        assert any(p.startswith(f"policy.{key}: ") for p in problems), (key, value, problems)


def test_draws_times_candidates_is_bounded_by_the_sampling_work_a_refit_can_afford() -> None:
    [problem] = _refusal(lambda: make_spec(policy={"num_draws": MAX_DRAWS, "num_candidates": MAX_CANDIDATES}))
    assert problem.startswith("policy.num_draws: 100000 draws over 16384 candidates is 1638400000 draw-candidate pairs")
    assert problem.endswith(f"use at most {MAX_SAMPLING_WORK // MAX_CANDIDATES} draws or fewer candidates")


def test_initial_arms_fit_next_to_control_within_max_arms() -> None:
    assert make_spec(policy={"max_arms": 4, "initial_arms": 3}).policy.initial_arms == 3
    [problem] = _refusal(lambda: make_spec(policy={"max_arms": 4, "initial_arms": 4}))
    assert problem.startswith("policy.initial_arms: must be an integer in [1, 3]")


def test_records_refuse_wrong_types_and_normalise_numbers() -> None:
    assert _refusal(lambda: PolicySettings(num_draws=500.5))[0].startswith("policy.num_draws: must be an integer")
    assert _refusal(lambda: PolicySettings(seed=True))[0].startswith("policy.seed: must be an integer")
    assert _refusal(lambda: Traffic(control_share=math.nan))[0].startswith("traffic.control_share: must be in (0, 1)")
    assert _refusal(lambda: Parameter("x", 0, math.inf))[0] == "parameter.upper: must be a finite number, got inf"
    assert _refusal(lambda: Guardrail("applies"))[0].startswith("guardrail: set exactly one of 'lower'")
    policy = PolicySettings(initial_radius=1, half_life_hours=2)
    assert isinstance(policy.initial_radius, float) and isinstance(policy.half_life_hours, float)
    spec = ExperimentSpec(name="a", parameters=[Parameter("x", 0, 1)], control={"x": 0}, metrics=[Metric("m")],
                          objectives=[Objective("m")])
    assert spec.parameters == (Parameter("x", 0.0, 1.0),) and spec.control == {"x": 0.0}
    assert ExperimentSpec.from_dict(spec.to_dict()) == spec


def test_spec_level_problems_are_collected_at_construction() -> None:
    spec = make_spec()
    problems = _refusal(lambda: dataclasses.replace(
        spec, name="", control={"x1": 9.0}, guardrails=(Guardrail("nope", lower=0.0),), stickiness_seconds=0))
    assert [p.split(":")[0] for p in problems] == [
        "name", "control.x1", "control.x2", "guardrails[0].metric", "stickiness_seconds"]


def test_json_integral_floats_are_read_as_integers() -> None:
    spec = ExperimentSpec.from_json(json.dumps(spec_dict(policy={"num_draws": 1e3, "max_arms": 8.0, "initial_arms": 4})))
    assert spec.policy.num_draws == 1000 and type(spec.policy.max_arms) is int
