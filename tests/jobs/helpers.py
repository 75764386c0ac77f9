"""Builders and stand-in policies for the refit tests (module-level functions, so spawned processes can import them).

The stand-ins implement ``bayesopt.proposal.RefitPolicy`` like the real one; tests that claim real fits use
``bayesopt.policy.GPPolicy``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bayesopt.distribution import CONTROL_ARM_ID, Arm
from bayesopt.errors import ModelFitError
from bayesopt.proposal import Proposal
from bayesopt.spec import ExperimentSpec
from param_store import ParamStore
from param_store.launch import launch_experiment
from tests.factories import spec_dict


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


@dataclass(frozen=True)
class StubPolicy:
    """Control plus the best observed non-control arms by mean objective, equal weights (no model)."""

    name: str = "stub"

    def propose(self, spec, table, *, previous=None, seed=0, warm_start=None, now=0.0) -> Proposal:
        objective = spec.objectives[0].metric
        rows = table[(table["metric"] == objective) & (table["arm_id"] != CONTROL_ARM_ID)]
        best = rows.groupby("arm_id")["mean"].mean().sort_values(ascending=False).index[: spec.policy.max_arms - 1]
        values = {a: {p.name: float(rows[rows["arm_id"] == a][f"x.{p.name}"].iloc[0]) for p in spec.parameters} for a in best}
        explore = (1.0 - spec.traffic.control_share) / max(1, len(values))
        arms = [Arm(CONTROL_ARM_ID, dict(spec.control), 1.0 - explore * len(values))]
        arms += [Arm(a, v, explore) for a, v in sorted(values.items())]
        state = {"calls": (warm_start or {}).get("calls", 0) + 1, "seed": seed}
        return Proposal(arms=tuple(arms), diagnostics={"kind": "stub"}, model_state=state,
                        timings={"fit": 0.0, "sample": 0.0}, num_observations=len(table))


#: Experiments for :class:`FailingPolicy` runs (plus one never launched) and the outcome every executor must give.
FAILING_POLICY_NAMES = ["good-a", "bad-b", "good-c"]
FAILING_POLICY_OUTCOMES = {
    "good-a": ("published", None), "bad-b": ("kept", "fit_failed"), "good-c": ("published", None),
    "missing": ("failed", "error"),
}


def outcomes(records) -> dict[str, tuple[str, str | None]]:
    """``{experiment: (status, reason)}`` of run records, as plain strings."""
    return {r.experiment: (r.status.value, None if r.reason is None else r.reason.value) for r in records}


@dataclass(frozen=True)
class FailingPolicy(StubPolicy):
    """Fails for experiments whose name starts with ``bad``, works for the others."""

    name: str = "failing"

    def propose(self, spec, table, **kwargs: Any) -> Proposal:
        if spec.name.startswith("bad"):
            raise ModelFitError(f"{spec.name}: the GP did not converge (test)")
        return super().propose(spec, table, **kwargs)


@dataclass(frozen=True)
class OutOfBoundsPolicy(StubPolicy):
    """Moves every exploring arm outside the spec's bounds."""

    name: str = "out_of_bounds"

    def propose(self, spec, table, **kwargs: Any) -> Proposal:
        proposal = super().propose(spec, table, **kwargs)
        arms = [a if a.arm_id == CONTROL_ARM_ID else Arm(a.arm_id, {**a.values, "x1": 99.0}, a.weight) for a in proposal.arms]
        return replace(proposal, arms=tuple(arms))


#: The policy the "real fit" tests use; ``REFIT_TEST_POLICY=tests.jobs.helpers:StubPolicy`` runs them on the stub.
POLICY = os.environ.get("REFIT_TEST_POLICY", "bayesopt.policy:GPPolicy")


@dataclass(frozen=True)
class SlowPolicy:
    """:data:`POLICY`, announced by touching ``$REFIT_TEST_MARKER`` and held up afterwards so a test can kill it."""

    name: str = "slow"

    def propose(self, spec, table, **kwargs: Any) -> Proposal:
        from jobs.propose import resolve_policy

        Path(os.environ["REFIT_TEST_MARKER"]).touch()
        proposal = resolve_policy(POLICY).propose(spec, table, **kwargs)
        time.sleep(float(os.environ.get("REFIT_TEST_SLEEP", "60")))
        return proposal


@dataclass(frozen=True)
class DyingPolicy(StubPolicy):
    """Kills its own process mid-refit, with the period lock held, as the OOM killer or a lost node would."""

    name: str = "dying"

    def propose(self, spec, table, **kwargs: Any) -> Proposal:
        os._exit(9)
