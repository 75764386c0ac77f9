"""Builders and stand-in policies for the refit tests (module-level functions, so spawned processes can import them).

The stand-ins have the real policy's signature; tests that claim real fits use ``bayesopt.policy.propose``.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution
from bayesopt.errors import ModelFitError
from bayesopt.spec import ExperimentSpec
from jobs.launch import launch_experiment
from param_store import ParamStore
from tests.factories import spec_dict


@dataclass(frozen=True)
class StubProposal:
    distribution: ParameterDistribution
    model_state: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    num_observations: int = 0


def launch(store: ParamStore, name: str = "feed", **overrides: Any) -> ExperimentSpec:
    """Launch a small two-parameter experiment (version 1 = the initial design)."""
    dist = launch_experiment(store, spec_dict(name, **overrides), now=time.time())
    return store.load_spec(dist.experiment)


def truth(metric: str, values: dict[str, float]) -> float:
    """A smooth rate surface: sessions peak near x1 = 1.4, applies fall slowly with x1."""
    x1, x2 = values["x1"], math.log10(values["x2"])
    if metric == "sessions":
        return 0.30 + 0.05 * math.exp(-((x1 - 1.4) ** 2) / 0.3) + 0.01 * x2
    return 0.10 - 0.004 * x1


def observe(store: ParamStore, name: str, *, version: int | None = None, count: int = 400) -> int:
    """Add one aggregate row per (arm, metric) of ``version`` (default current); returns the rows added."""
    dist = store.current(name) if version is None else store.load_version(name, version)
    spec = store.load_spec(name)
    rows = []
    for arm in dist.arms:
        for metric in spec.metric_names:
            total = round(truth(metric, dict(arm.values)) * count)
            rows.append({"version": dist.version, "arm_id": arm.arm_id, "metric": metric, "count": count,
                         "sum": total, "sum_sq": total})
    return store.add_observations(name, rows)


def stub_propose(spec, table, *, version, previous=None, seed=0, warm_start=None, now=None) -> StubProposal:
    """Control plus the best observed non-control arms by mean objective, equal weights (no model)."""
    objective = spec.objectives[0].metric
    rows = table[(table["metric"] == objective) & (table["arm_id"] != CONTROL_ARM_ID)]
    best = rows.groupby("arm_id")["mean"].mean().sort_values(ascending=False).index[: spec.policy.max_arms]
    values = {a: {p.name: float(rows[rows["arm_id"] == a][f"x.{p.name}"].iloc[0]) for p in spec.parameters} for a in best}
    share = spec.traffic.control_share
    explore = (1.0 - share) / max(1, len(values))
    arms = [Arm(CONTROL_ARM_ID, dict(spec.control), 1.0 - explore * len(values))]
    arms += [Arm(a, v, explore) for a, v in sorted(values.items())]
    dist = ParameterDistribution(
        experiment=spec.name, version=version, arms=tuple(arms), spec_hash=spec.spec_hash,
        control_share=share, created_at=now or time.time(), diagnostics={"kind": "stub"},
    )
    state = {"calls": (warm_start or {}).get("calls", 0) + 1, "seed": seed}
    return StubProposal(dist, state, {"fit": 0.0, "sample": 0.0}, len(table))


def failing_propose(spec, table, **kwargs: Any) -> StubProposal:
    """Fails for experiments whose name starts with ``bad``, works for the others."""
    if spec.name.startswith("bad"):
        raise ModelFitError(f"{spec.name}: the GP did not converge (test)")
    return stub_propose(spec, table, **kwargs)


def out_of_bounds_propose(spec, table, **kwargs: Any) -> StubProposal:
    """Moves every exploring arm outside the spec's bounds."""
    proposal = stub_propose(spec, table, **kwargs)
    dist = proposal.distribution
    arms = [a if a.arm_id == CONTROL_ARM_ID else Arm(a.arm_id, {**a.values, "x1": 99.0}, a.weight) for a in dist.arms]
    return StubProposal(dist.replace(arms=tuple(arms)), {}, {}, 0)


#: The policy the "real fit" tests use; ``REFIT_TEST_POLICY=tests.jobs.helpers:stub_propose`` runs them on the stub.
POLICY = os.environ.get("REFIT_TEST_POLICY", "tests.jobs.helpers:real_propose")


def policy_available() -> bool:
    return POLICY != "tests.jobs.helpers:real_propose" or importlib.util.find_spec("bayesopt.policy") is not None


def real_propose(spec, table, **kwargs: Any):
    from bayesopt.policy import propose

    return propose(spec, table, **kwargs)


def slow_propose(spec, table, **kwargs: Any):
    """:data:`POLICY`, announced by touching ``$REFIT_TEST_MARKER`` and held up afterwards so a test can kill it."""
    from jobs.refit import resolve_policy

    Path(os.environ["REFIT_TEST_MARKER"]).touch()
    proposal = resolve_policy(POLICY)(spec, table, **kwargs)
    time.sleep(float(os.environ.get("REFIT_TEST_SLEEP", "60")))
    return proposal
