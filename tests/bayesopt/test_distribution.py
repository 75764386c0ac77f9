"""The distribution record: invariants (property-tested), JSON round trips, the committed v1 document."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bayesopt import Arm, DistributionValidationError, ParameterDistribution, normalize_weights
from bayesopt.lattice import parse_arm_id, to_unit
from bayesopt.launch_design import initial_distribution, launch_prior_risk
from tests.factories import make_distribution, make_spec

DATA = Path(__file__).parent.parent / "data"


def _dist(weights: list[float], *, ids: list[str] | None = None, control_share: float = 0.1) -> ParameterDistribution:
    ids = ids or ["control"] + [f"a{i}" for i in range(1, len(weights))]
    arms = tuple(Arm(i, {"x1": 1.0}, w) for i, w in zip(ids, weights, strict=True))
    return ParameterDistribution("exp", 1, arms, "abc", control_share=control_share, created_at=1.0)


weight_lists = st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=1, max_size=30).filter(lambda w: sum(w) > 0)


@given(weight_lists)
def test_normalized_weights_always_validate(raw: list[float]) -> None:
    weights = normalize_weights([1.0] + raw)  # control gets a share
    control_share = min(weights[0], 0.5) or 1e-3
    if weights[0] < control_share:
        return
    dist = _dist(weights, control_share=control_share)
    assert math.isclose(sum(dist.weights), 1.0, abs_tol=1e-9)
    assert ParameterDistribution.from_json(dist.to_json()) == dist


@given(st.lists(st.floats(min_value=0.01, max_value=10), min_size=2, max_size=10), st.floats(min_value=1.001, max_value=3))
def test_weights_not_summing_to_one_are_refused(raw: list[float], factor: float) -> None:
    weights = [w * factor for w in normalize_weights(raw)]
    with pytest.raises(DistributionValidationError, match="weights must sum to 1"):
        _dist(weights, control_share=1e-3)


@given(st.floats(allow_nan=True, allow_infinity=True).filter(lambda w: not (math.isfinite(w) and w >= 0)))
def test_negative_or_non_finite_weights_are_refused(bad: float) -> None:
    with pytest.raises(DistributionValidationError, match=r"arms\[1\]\.weight"):
        _dist([0.5, bad, 0.5], control_share=0.1)


@given(st.sampled_from(["", "has space", "x|y", "{tag}", "-lead"]))
def test_bad_arm_ids_are_refused(bad: str) -> None:
    with pytest.raises(DistributionValidationError, match=r"arms\[1\]\.arm_id"):
        _dist([0.5, 0.5], ids=["control", bad])


def test_duplicate_ids_missing_control_and_small_control_share() -> None:
    with pytest.raises(DistributionValidationError, match="duplicate arm id 'a'"):
        _dist([0.4, 0.3, 0.3], ids=["control", "a", "a"])
    with pytest.raises(DistributionValidationError, match="control_arm_id: 'control' is not one of the arms"):
        _dist([0.5, 0.5], ids=["a", "b"])
    with pytest.raises(DistributionValidationError, match="below control_share 0.3"):
        _dist([0.2, 0.8], control_share=0.3)


def test_values_outside_the_spec_are_named() -> None:
    spec = make_spec()
    dist = make_distribution(spec)
    bad = dist.replace(arms=(dist.arms[0], Arm("arm1", {"x1": 9.0, "x2": 1.0}, dist.arms[1].weight), dist.arms[2]))
    with pytest.raises(DistributionValidationError, match=r"arms\[1\]\.values\.x1: 9.0 is outside the bounds \[0.0, 2.0\]"):
        bad.validate_against(spec)
    dist.validate_against(spec)


def test_record_is_frozen() -> None:
    dist = make_distribution(make_spec())
    with pytest.raises(AttributeError):
        dist.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        dist.arms[0].values["x1"] = 3.0  # type: ignore[index]


def test_json_round_trip_keeps_diagnostics_and_rollback_source() -> None:
    dist = make_distribution(make_spec()).replace(diagnostics={"arms": {"arm1": {"p_feasible": 0.9}}}, source_version=3)
    again = ParameterDistribution.from_json(dist.to_json())
    assert again.to_dict() == dist.to_dict()
    assert again.source_version == 3 and again.diagnostics["arms"]["arm1"]["p_feasible"] == 0.9


def test_unknown_schema_and_malformed_documents() -> None:
    doc = make_distribution(make_spec()).to_dict()
    with pytest.raises(DistributionValidationError, match="schema_version: unsupported 99"):
        ParameterDistribution.from_dict({**doc, "schema_version": 99})
    with pytest.raises(DistributionValidationError, match="spec_hash: is required"):
        ParameterDistribution.from_dict({k: v for k, v in doc.items() if k != "spec_hash"})
    with pytest.raises(DistributionValidationError, match="not valid JSON"):
        ParameterDistribution.from_json("{")


def test_committed_v1_document_still_loads() -> None:
    doc = json.loads((DATA / "distribution_v1.json").read_text())
    dist = ParameterDistribution.from_dict(doc)
    assert dist.version == 1 and dist.experiment == "feed_v1" and dist.control_arm.weight >= dist.control_share


def test_initial_design_is_on_the_lattice_around_control_and_deterministic() -> None:
    spec = make_spec(policy={"initial_arms": 8, "initial_radius": 0.25, "grid_levels": 33})
    dist = initial_distribution(spec, now=0.0)
    assert dist == initial_distribution(spec, now=0.0)
    explore = min(1 - spec.traffic.control_share, spec.policy.max_unsafe_share / launch_prior_risk(spec))
    assert dist.control_arm.weight == pytest.approx(1 - explore)
    center = to_unit(spec, spec.control)
    others = [a for a in dist.arms if a.arm_id != "control"]
    assert 4 <= len(others) <= 8
    for arm in others:
        assert parse_arm_id(spec, arm.arm_id) is not None
        # snapping moves a point by at most half a lattice step beyond the design box
        assert (abs(to_unit(spec, arm.values) - center) <= 0.25 + 0.5 / 32 + 1e-9).all()
    dist.validate_against(spec)


def test_initial_design_respects_max_arms() -> None:
    spec = make_spec(policy={"initial_arms": 3, "max_arms": 4})
    dist = initial_distribution(spec, now=0.0)
    assert len(dist.arms) <= 4 and dist.control_arm.weight >= spec.traffic.control_share
