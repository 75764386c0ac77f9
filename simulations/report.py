"""What a closed-loop run (or a study of many) comes to: summary numbers, tables, plots and JSON on disk.

Summary of one run (:func:`summarize`), every number judged by the world's true expected metrics:

- ``cumulative_regret_pct_h``: the sum over hours of the served mix's objective gap to the best feasible arm,
  in % of control's objective (so 48 hours at a 1% gap make 48);
- ``lost_per_1000``: objective events (engaged sessions) lost against serving the best feasible arm to every
  member, per 1,000 members served;
- ``final_lift_pct``: the last hour's served mix (control included) against control alone, in %;
- ``top_arm_lift_pct`` and ``top_arm_feasible``: the last hour's most-served non-control arm (the one a team
  would ship) against control, and whether it meets every guardrail;
- ``unsafe_pct``: share of all members served on arms that break a guardrail (members-weighted over every
  hour, the launch hour included); ``unsafe_after_launch_pct`` leaves out hour 0 (the launch design, which
  is the same for every policy), ``worst_hour_unsafe_pct`` is the worst single hour after launch;
- ``hours_to_1pct``: the first hour whose served mix is within 1% of the best feasible arm's objective
  (hours of data it took; ``inf`` when never), ``hours_to_1pct_stable``: the first hour from which every
  later hour is within 1%;
- ``regret_floor_pct_h``: what the control share alone costs over the run (serving control at the spec's
  ``control_share`` and the best feasible arm to everyone else), in the same units as the cumulative regret,
  and ``regret_over_floor``, their ratio;
- ``final_best_lift_pct``: the best feasible arm's lift in the last hour (after a shift: the new best's);
- ``shift_step`` and ``hours_to_recover_1pct`` (worlds with a ranker release): the first hour of the new world,
  and how many hours after it the served mix first got back within 1% of the new best (0: it never left;
  ``inf``: never);
- ``calibration``: one ``[p_feasible, truly feasible (0/1), weight, hour]`` per non-control arm and hour whose
  served version gave the arm a ``p_feasible`` (see :func:`simulations.study.reliability_table`);
- ``risk_expected_unsafe_mean`` / ``_max``: the policy's own reported budget use,
  ``diagnostics["risk"]["expected_unsafe_share"]``, over the hours after launch that report it (None when none
  do), and ``risk_launch_expected_unsafe``: the launch design's (hour 0, the same for every policy).

Every hour is judged against the world in force then (after a shift, the new one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Columns of the study table: summary key, header, decimals.
TABLE_COLUMNS = (
    ("cumulative_regret_pct_h", "cumulative regret (% x h)", 1),
    ("lost_per_1000", "engaged sessions lost per 1k members", 2),
    ("final_lift_pct", "final lift vs control (%)", 2),
    ("top_arm_lift_pct", "top arm lift (%)", 2),
    ("unsafe_after_launch_pct", "guardrail-breaking traffic (%)", 1),
    ("worst_hour_unsafe_pct", "worst hour after launch (%)", 1),
    ("hours_to_1pct", "hours to within 1%", 1),
)
POLICY_ORDER = ("gp", "gp_loose", "utility", "arm_ts", "ax", "ab_grid", "uniform")
POLICY_LABELS = {
    "gp": "gp (ours: constrained TS)", "gp_loose": "gp_loose (ours, feasibility_threshold 0.5)", "utility": "utility (LinkedIn-style)", "arm_ts": "arm_ts (per-arm TS)",
    "ax": "ax (Ax default)", "ab_grid": "ab_grid (fixed A/B grid)", "uniform": "uniform",
}
WITHIN = 0.01


def _run_doc(result: Any) -> dict[str, Any]:
    """A :class:`~simulations.loop.LoopResult` or its ``to_dict()`` as a plain dict."""
    return result if isinstance(result, Mapping) else result.to_dict()


def hours_frame(result: Any) -> pd.DataFrame:
    """One row per hour of a run: step, hour of day, version, members and the flattened hourly metrics."""
    doc = _run_doc(result)
    rows = []
    for h in doc["hours"]:
        arms = h["arms"]
        row = {k: h[k] for k in ("step", "time", "hour_of_day", "version", "members", "rows_posted",
                                 "cumulative_regret", "cumulative_relative_regret")}
        row.update(h["metrics"])
        row["control_share"] = sum(a["weight"] for a in arms if a["arm_id"] == "control")
        risk = h.get("risk") or {}
        used = risk.get("expected_unsafe_share") if isinstance(risk, Mapping) else None
        row["risk_expected_unsafe_share"] = float(used) if isinstance(used, (int, float)) else float("nan")
        row["refit_status"] = h["refit"]["status"]
        row["refit_s"] = h["refit"]["seconds"]
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(result: Any) -> dict[str, Any]:
    """The run's summary numbers (see the module docstring)."""
    doc = _run_doc(result)
    frame = hours_frame(doc)
    optimum = doc["optimum"]["objective"]
    members = frame["members"].to_numpy(dtype=float)
    if "gap" in frame:  # recorded per hour, against the best feasible arm of the world in force then
        gap = frame["gap"]
    else:  # older runs: regret / (optimum * tod), with relative_regret = regret / (control * tod)
        gap = frame["relative_regret"] * _control_level(doc) / abs(optimum)
    if "floor_relative_regret" in frame:
        floor = 100 * float(frame["floor_relative_regret"].sum())
    else:
        floor = _regret_floor(doc) * len(frame)
    within = (gap <= WITHIN).to_numpy()
    first = int(np.argmax(within)) if within.any() else math.inf
    stable = math.inf
    if within[-1]:
        bad = np.flatnonzero(~within)
        stable = int(bad[-1] + 1) if len(bad) else 0
    after = frame["step"] >= 1
    shift_step, recover = None, None
    if "regime" in frame and (frame["regime"] > 0).any():
        shift_step = int(np.argmax((frame["regime"] > 0).to_numpy()))
        back = np.flatnonzero(within[shift_step:])
        recover = float(back[0]) if len(back) else math.inf
    reported = frame["risk_expected_unsafe_share"].to_numpy(dtype=float)
    used = reported[after.to_numpy() & np.isfinite(reported)]
    cumulative = float(100 * frame["relative_regret"].sum())
    last = doc["hours"][-1]
    top = max((a for a in last["arms"] if a["arm_id"] != "control"), key=lambda a: a["weight"], default=None)
    config = doc["config"]
    return {
        "policy": config["policy"],
        "variant": config.get("variant"),
        "seed": config["seed"],
        "stream": config.get("stream", 0),
        "policy_seed": doc["spec"]["policy"]["seed"],
        "hours": len(frame),
        "members": int(members.sum()),
        "wall_s": doc.get("wall_s"),
        "refit_s_mean": float(frame["refit_s"].mean()),
        "published": int((frame["refit_status"] == "published").sum()),
        "final_version": doc.get("final_version"),
        "cumulative_regret_pct_h": cumulative,
        "regret_floor_pct_h": floor,
        "regret_over_floor": cumulative / floor if floor > 0 else float("nan"),
        "lost_per_1000": float(1000 * (frame["regret"] * members).sum() / max(members.sum(), 1.0)),
        "final_lift_pct": float(100 * frame["objective_relative"].iloc[-1]),
        "best_feasible_lift_pct": float(100 * doc["optimum"]["relative"][_objective_metric(doc)]),
        "final_best_lift_pct": float(100 * frame["best_relative"].iloc[-1]) if "best_relative" in frame
        else float(100 * doc["optimum"]["relative"][_objective_metric(doc)]),
        "top_arm": None if top is None else top["values"],
        "top_arm_lift_pct": None if top is None else float(100 * _true_lift(doc, top["values"])),
        "top_arm_feasible": None if top is None else bool(top["feasible"]),
        "unsafe_pct": float(100 * (frame["unsafe_share"] * members).sum() / max(members.sum(), 1.0)),
        "unsafe_after_launch_pct": float(
            100 * (frame["unsafe_share"][after] * members[after]).sum() / max(members[after].sum(), 1.0)
        ) if after.any() else float("nan"),
        "worst_hour_unsafe_pct": float(100 * frame["unsafe_share"][after].max()) if after.any() else float("nan"),
        "max_unsafe_share_bound_pct": float(100 * doc["spec"]["policy"]["max_unsafe_share"]),
        "hours_to_1pct": float(first),
        "hours_to_1pct_stable": float(stable),
        "shift_step": shift_step,
        "hours_to_recover_1pct": recover,
        "risk_expected_unsafe_mean": float(used.mean()) if len(used) else None,
        "risk_expected_unsafe_max": float(used.max()) if len(used) else None,
        "risk_launch_expected_unsafe": float(reported[0]) if len(reported) and np.isfinite(reported[0]) else None,
        "calibration": calibration_pairs(doc),
    }


def calibration_pairs(result: Any) -> list[list[float]]:
    """``[p_feasible, truly feasible (1.0/0.0), weight, step]`` for every non-control arm of every hour whose
    served version gave it a ``p_feasible`` (control is feasible by construction and left out)."""
    out = []
    for h in _run_doc(result)["hours"]:
        for a in h["arms"]:
            p = a.get("p_feasible")
            if a["arm_id"] != "control" and p is not None:
                out.append([float(p), 1.0 if a["feasible"] else 0.0, float(a["weight"]), int(h["step"])])
    return out


def _regret_floor(doc: Mapping[str, Any]) -> float:
    """Relative regret (%) of serving the best feasible arm to everyone but control's fixed share."""
    share = float(doc["spec"]["traffic"]["control_share"])
    return 100 * share * float(doc["optimum"]["relative"][_objective_metric(doc)])


def _objective_metric(doc: Mapping[str, Any]) -> str:
    return doc["spec"]["objectives"][0]["metric"]


def _control_level(doc: Mapping[str, Any]) -> float:
    return float(doc["control"][_objective_metric(doc)])


def _true_lift(doc: Mapping[str, Any], values: Mapping[str, float]) -> float:
    """True objective lift of ``values`` against control in the world of the run's last hour."""
    from simulations.loop import build_world

    world = build_world(_config(doc))
    regime = world.regime(doc["hours"][-1].get("world_hour"))
    M = world.expected_metrics(world.points([values, doc["spec"]["control"]]), regime=regime)
    j = world.metric_names.index(_objective_metric(doc))
    return float((M[0, j] - M[1, j]) / abs(M[1, j]))


def _config(doc: Mapping[str, Any]) -> Any:
    from simulations.loop import LoopConfig

    return LoopConfig(**doc["config"])


# -- the study table ---------------------------------------------------------------------------------------------
def study_frame(summaries: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (policy, seed) summary."""
    return pd.DataFrame(list(summaries))


def study_table(summaries: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Per policy: mean and standard deviation over seeds of every :data:`TABLE_COLUMNS` number.

    ``hours_to_1pct`` counts only the seeds that got there (``reached`` says how many did).
    """
    frame = study_frame(summaries)
    rows = []
    order = [p for p in POLICY_ORDER if p in set(frame["policy"])] + sorted(set(frame["policy"]) - set(POLICY_ORDER))
    for policy in order:
        g = frame[frame["policy"] == policy]
        row: dict[str, Any] = {"policy": policy, "seeds": len(g)}
        for key, _, _ in TABLE_COLUMNS:
            values = g[key].astype(float).to_numpy()
            finite = values[np.isfinite(values)]
            row[f"{key}_mean"] = float(finite.mean()) if len(finite) else float("nan")
            row[f"{key}_sd"] = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
        row["reached_1pct"] = int(np.isfinite(g["hours_to_1pct"].astype(float)).sum())
        row["top_arm_feasible"] = int(g["top_arm_feasible"].fillna(False).astype(bool).sum())
        row["max_unsafe_share_bound_pct"] = float(g["max_unsafe_share_bound_pct"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    """The study table as GitHub markdown: ``mean ± sd`` per cell."""
    headers = ["policy", *(h for _, h, _ in TABLE_COLUMNS)]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(["---"] + ["---:"] * len(TABLE_COLUMNS)) + " |"]
    for _, row in table.iterrows():
        cells = [POLICY_LABELS.get(row["policy"], row["policy"])]
        for key, _, decimals in TABLE_COLUMNS:
            mean, sd = row[f"{key}_mean"], row[f"{key}_sd"]
            value = f"{mean:.{decimals}f}" + (f" ± {sd:.{decimals}f}" if row["seeds"] > 1 else "")
            if key == "hours_to_1pct":
                reached = int(row["reached_1pct"])
                cell = "never" if reached == 0 else value
                if 0 < reached < row["seeds"]:
                    cell += f" ({reached}/{row['seeds']} seeds)"
            elif key == "top_arm_lift_pct":
                cell = f"{value} ({int(row['top_arm_feasible'])}/{row['seeds']} feasible)"
            else:
                cell = value
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- plots -------------------------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt



def _save(plt: Any, fig: Any, axes: Any, path: Path, title: str) -> Path:
    """Grid every panel, title the figure, write it to ``path`` and free it."""
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

def plot_regret(frame: pd.DataFrame, path: Path, *, title: str = "", floor: float | None = None) -> Path:
    """Regret per hour and cumulative; ``floor`` (%) marks what control's fixed share alone costs per hour."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(frame["step"], 100 * frame["relative_regret"], marker="o", ms=3, label="served mix")
    ax1.axhline(0, color="grey", lw=0.8)
    if floor is not None:
        ax1.axhline(floor, color="C2", ls=":", label=f"floor: control's fixed share ({floor:.2f}%)")
        ax1.legend(fontsize=8)
    ax1.set(xlabel="simulated hour", ylabel="regret (% of control's objective)", title="regret per hour vs best feasible arm")
    ax2.plot(frame["step"], 100 * frame["relative_regret"].cumsum(), marker="o", ms=3, color="C3")
    ax2.set(xlabel="simulated hour", ylabel="cumulative regret (% x hours)", title="cumulative regret")
    return _save(plt, fig, (ax1, ax2), path, title)


def plot_metrics(frame: pd.DataFrame, doc: Mapping[str, Any], path: Path, *, title: str = "") -> Path:
    plt = _pyplot()
    guardrails = doc["spec"].get("guardrails", [])
    fig, axes = plt.subplots(1, 1 + max(1, len(guardrails)), figsize=(5 * (1 + max(1, len(guardrails))), 4))
    axes = np.atleast_1d(axes)
    metric = _objective_metric(doc)
    best = 100 * doc["optimum"]["relative"][metric]
    ax = axes[0]
    ax.plot(frame["step"], 100 * frame["objective_relative"], marker="o", ms=3, label="served mix")
    ax.axhline(best, color="C2", ls="--", label=f"best feasible arm ({best:+.2f}%)")
    ax.axhline(0, color="grey", lw=0.8, label="control")
    ax.set(xlabel="simulated hour", ylabel="% change vs control", title=f"objective: {metric}")
    ax.legend(fontsize=8)
    for ax, g in zip(axes[1:], guardrails, strict=False):
        m = g["metric"]
        bound = g.get("lower") if g.get("lower") is not None else g.get("upper")
        scale = 100 if g.get("relative") else 1
        ax.plot(frame["step"], scale * frame[f"guardrail.{m}"], marker="o", ms=3, color="C1", label="served mix")
        ax.axhline(scale * bound, color="C3", ls="--", label=f"guardrail ({'>=' if g.get('lower') is not None else '<='} {scale * bound:g}{'%' if scale == 100 else ''})")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel="simulated hour", ylabel="% change vs control" if g.get("relative") else m, title=f"guardrail: {m}")
        ax.legend(fontsize=8)
    return _save(plt, fig, axes, path, title)


def plot_traffic(frame: pd.DataFrame, doc: Mapping[str, Any], path: Path, *, title: str = "") -> Path:
    """Where the traffic went: arms in parameter space per hour (on the true feasibility map), and shares."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    params = [p["name"] for p in doc["spec"]["parameters"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.1, 1]})
    px, py = params[0], params[1] if len(params) > 1 else params[0]
    if len(params) == 2:
        from simulations.loop import build_spec, build_world

        config = _config(doc)
        world = build_world(config)
        spec = build_spec(world, config)
        truth = world.truth(spec)
        lo = [p["lower"] for p in doc["spec"]["parameters"]]
        hi = [p["upper"] for p in doc["spec"]["parameters"]]
        X, Y, M = _truth_map(truth, (lo[0], hi[0]), (lo[1], hi[1]))
        feasible = truth.feasible(M).reshape(X.shape)
        lift = 100 * truth.relative(M)[:, world.metric_names.index(_objective_metric(doc))].reshape(X.shape)
        ax1.pcolormesh(X, Y, feasible.astype(float), cmap=ListedColormap(["#f4d6d6", "#e3f1e3"]), shading="nearest",
                       vmin=0, vmax=1)
        cs = ax1.contour(X, Y, lift, levels=8, colors="grey", linewidths=0.6)
        ax1.clabel(cs, fmt="%+.1f%%", fontsize=7)
    steps = len(doc["hours"])
    cmap = plt.get_cmap("viridis")
    for h in doc["hours"]:
        xs = [a["values"][px] for a in h["arms"] if a["arm_id"] != "control"]
        ys = [a["values"][py] for a in h["arms"] if a["arm_id"] != "control"]
        ws = [a["weight"] for a in h["arms"] if a["arm_id"] != "control"]
        ax1.scatter(xs, ys, s=[600 * w for w in ws], color=cmap(h["step"] / max(1, steps - 1)), alpha=0.55,
                    edgecolors="none")
    control = doc["spec"]["control"]
    opt = doc["optimum"]["values"]
    ax1.scatter([control[px]], [control[py]], marker="X", s=90, color="black", label="control", zorder=5)
    ax1.scatter([opt[px]], [opt[py]], marker="*", s=220, color="red", label="best feasible arm", zorder=5)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, max(1, steps - 1)))
    fig.colorbar(sm, ax=ax1, label="simulated hour")
    ax1.set(xlabel=px, ylabel=py, title="arms served (size: traffic share; green: meets guardrails)")
    ax1.legend(loc="upper left", fontsize=8)
    # shares per hour
    unsafe = frame["unsafe_share"].to_numpy()
    control_share = frame["control_share"].to_numpy()
    safe = np.clip(1.0 - unsafe - control_share, 0.0, 1.0)
    ax2.stackplot(frame["step"], unsafe, safe, control_share, colors=["#e57373", "#66bb6a", "#9e9e9e"],
                  labels=["arms breaking a guardrail", "arms meeting guardrails", "control"], alpha=0.9)
    bound = doc["spec"]["policy"]["max_unsafe_share"]
    ax2.axhline(bound, color="black", ls="--", lw=1, label=f"max_unsafe_share = {bound:g}")
    ax3 = ax2.twinx()
    ax3.plot(frame["step"], frame["effective_arms"], color="black", lw=1.2, label="effective arms")
    ax3.set_ylabel("effective arms (exp entropy)")
    ax2.set(xlabel="simulated hour", ylabel="share of traffic", ylim=(0, 1), title="where the traffic went")
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = ax3.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8, framealpha=0.9)
    return _save(plt, fig, (), path, title)  # a map and a stacked share: no grid


#: Points per axis of the feasibility map (the default lattice of a two-weight spec: 33 levels).
MAP_POINTS = 33


def _truth_map(truth: Any, xr: tuple[float, float], yr: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True metrics on a grid over two parameters, cached on the ``Truth`` object (worlds are reused)."""
    cache = truth.__dict__.setdefault("_report_maps", {})
    key = (xr, yr)
    if key not in cache:
        X, Y = np.meshgrid(np.linspace(*xr, MAP_POINTS), np.linspace(*yr, MAP_POINTS), indexing="xy")
        cache[key] = (X, Y, truth.metrics(np.column_stack([X.ravel(), Y.ravel()])))
    return cache[key]


def write_run_report(result: Any, out_dir: str | Path) -> dict[str, Path]:
    """Write ``summary.json``, ``run.json``, ``hours.csv`` and three PNGs of one run into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = _run_doc(result)
    frame = hours_frame(doc)
    summary = summarize(doc)
    title = f"{POLICY_LABELS.get(summary['policy'], summary['policy'])}, seed {summary['seed']}"
    paths = {
        "run": out / "run.json",
        "hours": out / "hours.csv",
        "summary": out / "summary.json",
        "regret": plot_regret(frame, out / "regret.png", title=title, floor=_regret_floor(doc)),
        "metrics": plot_metrics(frame, doc, out / "metrics.png", title=title),
        "traffic": plot_traffic(frame, doc, out / "traffic.png", title=title),
    }
    _dump(doc, paths["run"])
    frame.to_csv(paths["hours"], index=False)
    _dump({"summary": summary, "config": doc["config"], "optimum": doc["optimum"], "control": doc["control"],
           "files": {k: p.name for k, p in paths.items()}}, paths["summary"])
    return paths


# -- study plots -------------------------------------------------------------------------------------------------
def plot_study(docs: Sequence[Mapping[str, Any]], path: Path, *, title: str = "") -> Path:
    """Mean (band: min..max over seeds) cumulative regret, objective lift and unsafe share per hour, by policy."""
    plt = _pyplot()
    by_policy: dict[str, list[pd.DataFrame]] = {}
    for doc in docs:
        by_policy.setdefault(doc["config"]["policy"], []).append(hours_frame(doc))
    order = [p for p in POLICY_ORDER if p in by_policy] + sorted(set(by_policy) - set(POLICY_ORDER))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    panels = [
        ("cumulative regret (% x hours)", lambda f: 100 * f["relative_regret"].cumsum()),
        ("served objective vs control (%)", lambda f: 100 * f["objective_relative"]),
        ("traffic on guardrail-breaking arms (%)", lambda f: 100 * f["unsafe_share"]),
    ]
    for i, policy in enumerate(order):
        frames = by_policy[policy]
        n = min(len(f) for f in frames)
        steps = frames[0]["step"].to_numpy()[:n]
        for ax, (label, fn) in zip(axes, panels, strict=True):
            Y = np.vstack([fn(f).to_numpy()[:n] for f in frames])
            ax.plot(steps, Y.mean(axis=0), color=f"C{i}", label=f"{policy} ({len(frames)} seeds)", lw=2 if policy == "gp" else 1.2)
            ax.fill_between(steps, Y.min(axis=0), Y.max(axis=0), color=f"C{i}", alpha=0.12)
            ax.set(xlabel="simulated hour", title=label)
    best = np.mean([100 * d["optimum"]["relative"][_objective_metric(d)] for d in docs])
    line = axes[1].axhline(best, color="black", ls="--", lw=1, label=f"best feasible arm (mean {best:+.2f}%)")
    axes[1].legend(handles=[line], fontsize=8, loc="lower right")
    bound = 100 * docs[0]["spec"]["policy"]["max_unsafe_share"]
    axes[2].axhline(bound, color="black", ls="--", lw=1, label=f"max_unsafe_share ({bound:g}%)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_study_report(docs: Sequence[Mapping[str, Any]], out_dir: str | Path, *, command: str = "") -> dict[str, Path]:
    """``table.md``, ``table.csv``, ``summaries.csv``, ``study.json`` and ``study.png`` for runs ``docs``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [summarize(d) for d in docs]
    table = study_table(summaries)
    md = markdown_table(table)
    hours = sorted({s["hours"] for s in summaries})
    members = sorted({d["config"]["members_per_hour"] for d in docs})
    note = (f"\n\n{len(summaries)} runs; {', '.join(map(str, hours))} simulated hours; "
            f"{', '.join(f'{m:g}' for m in members)} members per hour on average; mean ± sd over seeds.\n")
    if command:
        note += f"Command: `{command}`\n"
    paths = {
        "table_md": out / "table.md", "table_csv": out / "table.csv", "summaries": out / "summaries.csv",
        "study": out / "study.json", "plot": plot_study(docs, out / "study.png"),
    }
    paths["table_md"].write_text(md + note)
    table.to_csv(paths["table_csv"], index=False)
    study_frame(summaries).drop(columns=["calibration"], errors="ignore").to_csv(paths["summaries"], index=False)
    _dump({"command": command, "table": table.to_dict(orient="records"), "runs": summaries}, paths["study"])
    return paths


def _dump(doc: Any, path: Path) -> None:
    path.write_text(json.dumps(_plain(doc), indent=2, sort_keys=False, allow_nan=True) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value
