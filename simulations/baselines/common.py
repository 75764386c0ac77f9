"""What every baseline shares (each is a :class:`bayesopt.proposal.RefitPolicy`): serving a set of arms, the fixed arm set, per-arm effects.

Effects are measured the way the design asks: within each window (distribution version), each arm against
the control arm served in the same window, as a relative change ``(mean_arm - mean_control) / |mean_control|``;
windows are then pooled per arm by inverse variance. Time of day moves every arm alike, so the relative
changes stay comparable across hours while absolute means do not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import qmc

from bayesopt.distribution import CONTROL_ARM_ID, Arm, normalize_weights
from bayesopt.lattice import lattice_arm
from bayesopt.observation_table import param_column
from bayesopt.proposal import Proposal
from bayesopt.spec import ExperimentSpec

ArmPoint = tuple[str, Mapping[str, float]]
#: Floor on a window's squared standard error, times ``1 / count**2``: a window with all-zero 0/1 outcomes
#: reports a standard error of 0, which would claim infinite precision.
SE_FLOOR = 0.5
#: Control means closer to zero than this carry no usable relative information.
LEVEL_EPS = 1e-12


def policy_rng(seed: int) -> np.random.Generator:
    """The generator of one proposal; the refit hands a different seed to every period."""
    return np.random.default_rng(int(seed))


def serve(
    spec: ExperimentSpec,
    arms: Sequence[ArmPoint],
    *,
    weights: Sequence[float] | None = None,
    control_extra: float = 0.0,
    diagnostics: Mapping[str, object] | None = None,
) -> Proposal:
    """A proposal: control at ``control_share`` plus ``control_extra`` of the rest, arms sharing the remainder.

    ``arms`` are in priority order: duplicates and points equal to control are dropped, then all but the first
    ``max_arms - 1``. ``weights`` (default equal) split the arms' share; with no arms left control takes all.
    """
    control = {p: float(v) for p, v in spec.control.items()}
    kept: dict[str, tuple[Mapping[str, float], float]] = {}
    raw = [1.0] * len(arms) if weights is None else list(weights)
    for (arm_id, values), w in zip(arms, raw, strict=True):
        if arm_id == CONTROL_ARM_ID or arm_id in kept or dict(values) == control or w <= 0:
            continue
        if len(kept) >= spec.policy.max_arms - 1:
            break
        kept[arm_id] = (values, float(w))
    share = spec.traffic.control_share
    if kept:
        total = sum(w for _, w in kept.values())
        rest = (1.0 - share) * (1.0 - min(max(control_extra, 0.0), 1.0))
        weights_out = [1.0 - rest] + [rest * w / total for _, w in kept.values()]
    else:
        weights_out = [1.0]
    weights_out = normalize_weights(weights_out)  # rounding lands on the last arm, never on control
    out = [Arm(CONTROL_ARM_ID, control, weights_out[0])]
    out += [Arm(a, dict(v), w) for (a, (v, _)), w in zip(kept.items(), weights_out[1:], strict=True)]
    return Proposal(arms=tuple(out), diagnostics=dict(diagnostics or {}))


def snap_points(spec: ExperimentSpec, unit: np.ndarray) -> list[ArmPoint]:
    """Unit points (``n x d``) to distinct lattice arms, in order, control's point excluded."""
    control = {p: float(v) for p, v in spec.control.items()}
    out: dict[str, Mapping[str, float]] = {}
    for u in np.atleast_2d(unit):
        arm_id, values = lattice_arm(spec, u)
        if values != control:
            out.setdefault(arm_id, values)
    return list(out.items())


def fixed_arm_set(spec: ExperimentSpec, k: int, *, seed: int = 0) -> list[ArmPoint]:
    """A fixed set of up to ``k`` lattice arms spread over the whole space.

    A full factorial grid with ``L`` levels per axis at the cell centres ``(i + 1/2) / L`` when ``L**d <= k``
    for some ``L >= 2``; otherwise ``k`` scrambled Sobol points. Pure function of ``(spec, k, seed)``.
    """
    d = len(spec.parameters)
    levels = 1
    while (levels + 1) ** d <= k:
        levels += 1
    if levels >= 2:
        axis = (np.arange(levels) + 0.5) / levels
        unit = np.stack(np.meshgrid(*[axis] * d, indexing="ij"), -1).reshape(-1, d)
        return snap_points(spec, unit)[:k]
    n = 1 << max(0, (4 * k - 1).bit_length())
    unit = qmc.Sobol(d, scramble=True, seed=seed).random(n)
    return snap_points(spec, unit)[:k]


def online_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Only online observations: the baselines ignore simulator rows."""
    return table[table["source"] == "online"] if "source" in table.columns and len(table) else table


def relative_effects(spec: ExperimentSpec, table: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, metric): pooled relative change against control, its variance, sessions and windows.

    Columns ``arm_id``, ``metric``, ``effect``, ``variance``, ``count``, ``windows``; arms never served next to
    control in a window are absent. The variance of each window's change is ``(se_arm**2 + se_control**2) /
    control**2`` (standard errors floored, see :data:`SE_FLOOR`).
    """
    columns = ["arm_id", "metric", "effect", "variance", "count", "windows"]
    rows = online_rows(table)
    if not len(rows):
        return pd.DataFrame(columns=columns)
    se2 = np.maximum(rows["std_error"].to_numpy() ** 2, SE_FLOOR / np.maximum(rows["count"].to_numpy(), 1.0) ** 2)
    rows = rows.assign(se2=se2)
    ctrl = rows[rows["arm_id"] == CONTROL_ARM_ID].groupby(["window", "metric"])[["mean", "se2"]].first()
    ctrl = ctrl.rename(columns={"mean": "mean_c", "se2": "se2_c"})
    arms = rows[rows["arm_id"] != CONTROL_ARM_ID].join(ctrl, on=["window", "metric"], how="inner")
    level = arms["mean_c"].abs()
    arms = arms[level > LEVEL_EPS]
    level = level[level > LEVEL_EPS]
    if not len(arms):
        return pd.DataFrame(columns=columns)
    arms = arms.assign(
        r=(arms["mean"] - arms["mean_c"]) / level,
        w=level**2 / (arms["se2"] + arms["se2_c"]),
    )
    arms = arms.assign(wr=arms["w"] * arms["r"])
    g = arms.groupby(["arm_id", "metric"], sort=True)
    out = pd.DataFrame({"wr": g["wr"].sum(), "w": g["w"].sum(), "count": g["count"].sum(), "windows": g["window"].nunique()})
    out["effect"] = out["wr"] / out["w"]
    out["variance"] = 1.0 / out["w"]
    return out.reset_index()[columns]


def control_levels(table: pd.DataFrame) -> dict[str, float]:
    """Session-weighted mean of control per metric over all windows (for absolute guardrails)."""
    rows = online_rows(table)
    rows = rows[rows["arm_id"] == CONTROL_ARM_ID] if len(rows) else rows
    if not len(rows):
        return {}
    g = rows.assign(s=rows["mean"] * rows["count"]).groupby("metric")
    return (g["s"].sum() / g["count"].sum()).to_dict()


def arm_values(spec: ExperimentSpec, table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Parameter values of every arm in the table, from its ``x.<name>`` columns."""
    if not len(table):
        return {}
    cols = [param_column(p) for p in spec.parameter_names]
    first = table.drop_duplicates("arm_id")
    return {
        a: {p: float(v) for p, v in zip(spec.parameter_names, row, strict=True)}
        for a, row in zip(first["arm_id"], first[cols].to_numpy(), strict=True)
    }


def guardrail_ok(spec: ExperimentSpec, relative: Mapping[str, np.ndarray], levels: Mapping[str, float]) -> np.ndarray:
    """Whether relative changes (``metric -> array``, any common shape) meet every guardrail, elementwise.

    Absolute guardrails compare ``level * (1 + change)`` with the bound, ``level`` the control's mean; without
    a level they are skipped.
    """
    shape = np.shape(next(iter(relative.values()))) if relative else ()
    ok = np.ones(shape, dtype=bool)
    for g in spec.guardrails:
        r = relative[g.metric]
        if g.relative:
            value = r
        elif g.metric in levels and math.isfinite(levels[g.metric]):
            value = levels[g.metric] * (1.0 + r)
        else:
            continue
        ok &= (value >= g.bound) if g.is_lower else (value <= g.bound)
    return ok
