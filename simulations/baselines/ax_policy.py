"""Ax's own default generation strategy as a baseline, through ``ax.api.client.Client``.

Every hour a fresh ``Client`` sees one completed trial per arm observed so far, whose outcomes are the arm's
pooled relative changes against control with their standard errors (control itself is a trial at zero), so
guardrails become plain outcome constraints (``applies >= -0.01``). Its next trials (a batch of
:data:`DEFAULT_MAX_TRIALS` unless set), snapped to the lattice, are served with equal weights. Metric and
parameter names are passed to Ax as ``m<i>`` and ``p<i>`` because spec names may hold characters Ax's
expression parser reads as operators.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayesopt.distribution import CONTROL_ARM_ID, ParameterDistribution
from bayesopt.lattice import to_unit
from bayesopt.proposal import Proposal
from bayesopt.spec import ExperimentSpec
from simulations.baselines.common import (
    SE_FLOOR,
    arm_values,
    control_levels,
    fixed_arm_set,
    online_rows,
    relative_effects,
    serve,
    snap_points,
)

logger = logging.getLogger(__name__)

#: Trials asked of Ax per hour unless ``max_trials`` says otherwise. Ax generates them one by one, each
#: conditioned on the pending ones, so the cost grows faster than linearly: on the shared 2-CPU box with ten
#: observed arms, 4 trials took ~70 s and 11 trials ~300 s (under a load of 10; a few times less when idle).
DEFAULT_MAX_TRIALS = 4


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Ax's per-trial INFO logs and deprecation warnings for the duration of one proposal."""
    # Ax's loggers set their own level to INFO when created (some only during the call), and its handlers hang
    # on the "ax" logger: quieten both the loggers that exist and those handlers.
    names = ["ax", *(n for n in logging.root.manager.loggerDict if n.startswith("ax."))]
    targets: list[logging.Logger | logging.Handler] = [logging.getLogger(n) for n in names]
    targets += logging.getLogger("ax").handlers
    levels = [t.level for t in targets]
    for t in targets:
        t.setLevel(max(t.level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for t, level in zip(targets, levels, strict=True):
            t.setLevel(level)


@dataclass
class AxPolicy:
    """Ax's default (``fast``: center, Sobol, then GP BO) over relative changes.

    ``max_trials`` is the batch asked of Ax each hour (default ``min(max_arms - 1, DEFAULT_MAX_TRIALS)``).
    """

    name: str = "ax"
    max_trials: int | None = None

    def propose(
        self,
        spec: ExperimentSpec,
        table: pd.DataFrame,
        *,
        previous: ParameterDistribution | None = None,
        seed: int = 0,
        warm_start: Mapping[str, Any] | None = None,
        now: float = 0.0,
    ) -> Proposal:
        k = min(self.max_trials or DEFAULT_MAX_TRIALS, spec.policy.max_arms - 1)
        try:
            with warnings.catch_warnings():  # import first, so that _quiet sees Ax's loggers
                warnings.simplefilter("ignore")
                import ax.api.client  # noqa: F401

            with _quiet():
                points = self._suggest(spec, table, k, seed=seed)
            kind = self.name
        except Exception as exc:  # Ax raising must not stop a closed-loop run: fall back to a fixed design
            logger.warning("Ax generation failed (%s); serving the fixed design instead", exc)
            points, kind = [], f"{self.name}:fallback"
        arms = snap_points(spec, np.array([to_unit(spec, p) for p in points])) if points else []
        if not arms:
            arms = fixed_arm_set(spec, k, seed=spec.policy.seed)
        return serve(spec, arms[:k], diagnostics={"kind": kind, "suggested": points})

    def _suggest(self, spec: ExperimentSpec, table: pd.DataFrame, k: int, *, seed: int) -> list[dict[str, float]]:
        from ax.api.client import Client
        from ax.api.configs import RangeParameterConfig

        pnames = {p.name: f"p{i}" for i, p in enumerate(spec.parameters)}
        mnames = {m: f"m{i}" for i, m in enumerate(spec.metric_names)}
        client = Client(random_seed=seed)
        client.configure_experiment(
            parameters=[
                RangeParameterConfig(
                    name=pnames[p.name], bounds=(p.lower, p.upper), parameter_type="float",
                    scaling="log" if p.log_scale else None,
                )
                for p in spec.parameters
            ],
            name=spec.name.replace("-", "_").replace(".", "_"),
        )
        objective = spec.objectives[0]
        sign = "" if objective.direction == "maximize" else "-"
        client.configure_optimization(
            objective=f"{sign}{mnames[objective.metric]}",
            outcome_constraints=self._constraints(spec, table, mnames),
        )
        for values, outcome in self._trials(spec, table, mnames):
            index = client.attach_trial({pnames[p]: v for p, v in values.items()})
            client.complete_trial(index, raw_data=outcome)
        suggested = client.get_next_trials(max_trials=k)
        back = {v: p for p, v in pnames.items()}
        return [{back[n]: float(v) for n, v in params.items()} for params in suggested.values()]

    @staticmethod
    def _constraints(spec: ExperimentSpec, table: pd.DataFrame, mnames: dict[str, str]) -> list[str]:
        """Guardrails as constraints on relative changes; an absolute bound ``b`` becomes ``b / level - 1``."""
        levels = control_levels(table)
        out = []
        for g in spec.guardrails:
            bound = g.bound
            if not g.relative:
                level = levels.get(g.metric)
                if level is None or level <= 0 or not math.isfinite(level):
                    continue  # no control level yet: this guardrail cannot be expressed relatively
                bound = bound / level - 1.0
            out.append(f"{mnames[g.metric]} {'>=' if g.is_lower else '<='} {bound!r}")
        return out

    @staticmethod
    def _trials(
        spec: ExperimentSpec, table: pd.DataFrame, mnames: dict[str, str]
    ) -> list[tuple[dict[str, float], dict[str, tuple[float, float]]]]:
        """One (values, outcomes) per observed arm, control first (a change of exactly zero)."""
        effects = relative_effects(spec, table)
        if not len(effects):
            return []
        values = arm_values(spec, table)
        rows = online_rows(table)
        ctrl = rows[rows["arm_id"] == CONTROL_ARM_ID]
        control: dict[str, tuple[float, float]] = {}
        for metric, g in ctrl.groupby("metric"):
            level = g["mean"].abs().to_numpy()
            se2 = np.maximum(g["std_error"].to_numpy() ** 2, SE_FLOOR / np.maximum(g["count"].to_numpy(), 1.0) ** 2)
            precision = float(np.sum(level[level > 0] ** 2 / se2[level > 0]))
            if precision > 0:
                control[mnames[metric]] = (0.0, math.sqrt(1.0 / precision))
        out = [(dict(spec.control), control)] if control else []
        for arm, g in effects.groupby("arm_id", sort=True):
            outcome = {mnames[m]: (float(e), math.sqrt(float(v))) for m, e, v in zip(g["metric"], g["effect"], g["variance"], strict=True)}
            out.append((values[arm], outcome))
        return out
