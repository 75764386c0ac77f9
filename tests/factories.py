"""Shared builders for tests: specs, distributions and observation rows."""

from __future__ import annotations

import copy
import re
from typing import Any

from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution
from bayesopt.spec import ExperimentSpec


def spec_dict(name: str = "feed", **overrides: Any) -> dict[str, Any]:
    """A valid two-parameter spec document; ``overrides`` replace top-level fields."""
    doc: dict[str, Any] = {
        "name": name,
        "parameters": [
            {"name": "x1", "type": "float", "lower": 0.0, "upper": 2.0},
            {"name": "x2", "type": "float", "lower": 0.01, "upper": 10.0, "log_scale": True},
        ],
        "control": {"x1": 1.0, "x2": 1.0},
        "metrics": [{"name": "sessions", "kind": "rate"}, {"name": "applies", "kind": "rate"}],
        "objectives": [{"metric": "sessions", "direction": "maximize"}],
        "guardrails": [{"metric": "applies", "lower": -0.01, "relative": True}],
        "traffic": {"experiment_share": 1.0, "control_share": 0.2},
        "policy": {"max_arms": 8, "num_draws": 500, "num_candidates": 128, "initial_arms": 4},
    }
    doc.update(overrides)
    return doc


def make_spec(name: str = "feed", **overrides: Any) -> ExperimentSpec:
    return ExperimentSpec.from_dict(spec_dict(name, **overrides))


#: Values a spec must refuse, each at the document path it is written to; the refusal must name that path.
#: Each was once accepted: a cron that never fires, knobs no refit can afford, a seed that crashed the
#: launch, a name with a trailing newline, and a relative guardrail written in percent.
BAD_SPEC_VALUES: list[tuple[str, Any]] = [
    ("refit.cron", "99 * * * *"),
    ("policy.initial_arms", 2**40),
    ("policy.num_draws", 10**12),
    ("policy.seed", -1),
    ("name", "feed\n"),
    ("guardrails[0].lower", -5),
]


def spec_dict_with(path: str, value: Any, name: str = "feed") -> dict[str, Any]:
    """:func:`spec_dict` with the field at document ``path`` (``policy.seed``, ``guardrails[0].lower``) set to ``value``."""
    doc = copy.deepcopy(spec_dict(name))
    keys: list[str | int] = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    node: Any = doc
    for key in keys[:-1]:
        if isinstance(key, str):
            node = node.setdefault(key, {})
        else:
            node = node[key]
    node[keys[-1]] = value
    return doc


def make_distribution(
    spec: ExperimentSpec, version: int = 1, *, weights: list[float] | None = None, created_at: float = 1_700_000_000.0
) -> ParameterDistribution:
    """Control plus arms at evenly spaced points; ``weights`` covers all arms, control first."""
    weights = weights or [0.2, 0.3, 0.5]
    arms = [Arm(CONTROL_ARM_ID, dict(spec.control), weights[0])]
    for i, w in enumerate(weights[1:], start=1):
        values = {p.name: p.lower + (p.upper - p.lower) * i / len(weights) for p in spec.parameters}
        arms.append(Arm(f"arm{i}", values, w))
    return ParameterDistribution(
        experiment=spec.name, version=version, arms=tuple(arms), spec_hash=spec.spec_hash,
        control_share=spec.traffic.control_share, created_at=created_at, valid_from=created_at,
    )


def make_rows(version: int, arm_id: str, metric: str, *, count: int = 10, total: float = 3.0, source: str = "online") -> list[dict[str, Any]]:
    """One aggregate row with a 0/1 outcome (so ``sum_sq == sum``)."""
    return [{"version": version, "arm_id": arm_id, "metric": metric, "source": source, "count": count, "sum": total, "sum_sq": total}]
