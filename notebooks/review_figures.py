"""Figures of the Pareto review notebook: interactive Plotly figures and the same content as static matplotlib PNGs.

Each ``*_figure`` function returns a Plotly figure whose traces are named (the notebook's test checks them);
:func:`save_pngs` draws the static versions with matplotlib (Plotly's PNG export needs a Chrome install).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

from bayesopt.pareto import Frontier, ParetoAnalysis  # noqa: E402
from jobs.review import ReviewData  # noqa: E402

PERCENT = 100.0


def _pct(values: Any) -> Any:
    return [PERCENT * v for v in values]


def frontier_figure(analysis: ParetoAnalysis, frontier: Frontier) -> go.Figure:
    """Objective against one guardrail: model points (feasible or not), the predicted frontier with its band,
    the observed arms and their frontier with intervals, the current distribution's mass, the limit."""
    o, g = frontier.objective, frontier.guardrail
    pts, pred, obs, arms = analysis.points, frontier.predicted, frontier.observed, frontier.arms_observed
    fig = go.Figure()
    for feasible, name, color in ((True, "feasible points", "#9ecae1"), (False, "infeasible points", "#fcbba1")):
        sub = pts[pts["feasible"] == feasible]
        fig.add_trace(go.Scatter(x=_pct(sub[g]), y=_pct(sub[o]), mode="markers", name=name,
                                 marker={"size": 4, "color": color}, hovertext=sub["p_feasible"].round(3)))
    band_x = _pct(list(pred[g]) + list(pred[g])[::-1])
    band_y = _pct(list(pred[f"{o}_upper"]) + list(pred[f"{o}_lower"])[::-1])
    fig.add_trace(go.Scatter(x=band_x, y=band_y, fill="toself", name=f"{analysis.credibility:.0%} credible band",
                             line={"width": 0}, fillcolor="rgba(49,130,189,0.2)"))
    fig.add_trace(go.Scatter(x=_pct(pred[g]), y=_pct(pred[o]), mode="lines+markers", name="predicted frontier",
                             line={"color": "#3182bd"}, marker={"size": 7, "color": "#3182bd"}))
    arms = _informative(arms, pts, (o, g))
    for frame, name, color in ((arms, "observed arms", "#636363"), (obs, "observed frontier", "#e6550d")):
        fig.add_trace(go.Scatter(
            x=_pct(frame[g]), y=_pct(frame[o]), mode="markers", name=name, text=frame["arm_id"],
            marker={"color": color, "size": 8 if name == "observed frontier" else 6},
            error_x={"type": "data", "symmetric": False, "array": _pct(frame[f"{g}_upper"] - frame[g]),
                     "arrayminus": _pct(frame[g] - frame[f"{g}_lower"])},
            error_y={"type": "data", "symmetric": False, "array": _pct(frame[f"{o}_upper"] - frame[o]),
                     "arrayminus": _pct(frame[o] - frame[f"{o}_lower"])}))
    cur = analysis.current
    if not cur.empty:
        fig.add_trace(go.Scatter(x=_pct(cur[g]), y=_pct(cur[o]), mode="markers", name="current distribution",
                                 text=cur["arm_id"], marker={"size": 10 + 60 * cur["weight"], "color": "rgba(0,0,0,0)",
                                                             "line": {"color": "#31a354", "width": 2}}))
    lo, hi = min(pts[o]), max(pts[o])
    fig.add_trace(go.Scatter(x=[PERCENT * frontier.limit] * 2, y=_pct([lo, hi]), mode="lines", name="guardrail limit",
                             line={"dash": "dash", "color": "#de2d26"}))
    fig.update_layout(title=f"{o} against {g}", xaxis_title=_axis(analysis, g), yaxis_title=_axis(analysis, o))
    return fig


def _informative(arms: Any, points: Any, metrics: tuple[str, str]) -> Any:
    """Observed arms whose intervals are narrower than half the models' range on both axes (arms served to a
    handful of members have intervals that would swamp the figure; the report lists every arm)."""
    keep = None
    for m in metrics:
        span = float(points[m].max() - points[m].min()) or 1.0
        ok = (arms[f"{m}_upper"] - arms[f"{m}_lower"]) <= span
        keep = ok if keep is None else keep & ok
    return arms[keep]


def _axis(analysis: ParetoAnalysis, metric: str) -> str:
    scale = analysis.scales[metric]
    return f"{metric}: {'change against control (%)' if scale.divisor != 1.0 else 'level (x100)'}"


def weights_figure(data: ReviewData) -> go.Figure:
    """The served weights hour by hour (version by version), one stacked area per arm."""
    frame = data.weights()
    fig = go.Figure()
    for arm, rows in frame.groupby("arm_id", sort=False):
        series = rows.set_index("version")["weight"].reindex(sorted(frame["version"].unique()), fill_value=0.0)
        fig.add_trace(go.Scatter(x=list(series.index), y=list(series.values), name=str(arm), stackgroup="weights",
                                 mode="lines"))
    fig.update_layout(title="served distribution by version (one per hour)", xaxis_title="version",
                      yaxis_title="weight")
    return fig


def guardrails_figure(report: dict[str, Any], analysis: ParetoAnalysis) -> go.Figure:
    """Each guardrail's margin from its limit: observed for the served mix (report) and predicted for the current
    distribution (models), positive on the safe side."""
    fig = go.Figure()
    observed = [g for g in report["guardrails"] if "estimate" in g]
    fig.add_trace(go.Bar(
        x=[g["metric"] for g in observed], y=[PERCENT * g["margin"] for g in observed], name="observed margin (served mix)",
        text=[g["status"] for g in observed],
        error_y={"type": "data", "array": [PERCENT * (g["estimate"]["upper"] - g["estimate"]["value"]) for g in observed]}))
    predicted = [g for g in analysis.guardrails if "margin" in g]
    fig.add_trace(go.Bar(
        x=[g["metric"] for g in predicted], y=[PERCENT * g["margin"] for g in predicted],
        name="predicted margin (current distribution)",
        error_y={"type": "data", "array": [PERCENT * (g["mix_upper"] - g["mix"]) for g in predicted]}))
    fig.update_layout(title="guardrails: distance from the limit (x100, positive is safe)", barmode="group")
    return fig


def ship_figure(ship: dict[str, Any] | None, report: dict[str, Any]) -> go.Figure:
    """The arm a team would ship: its predicted lifts with bands and, where it was served, its observed lifts; next
    to them the served arm the models rate best on the objective (what a riskier choice would promise)."""
    fig = go.Figure()
    if ship is None:
        fig.update_layout(title="no served arm meets every guardrail with enough confidence yet")
        return fig
    _lift_bars(fig, ship["predicted"], f"predicted: {ship['arm_id']}")
    observed = report["combined"]["arms"].get(ship["arm_id"], {}).get("metrics", {})
    if observed:
        rel = {m: v["relative_lift"] for m, v in observed.items() if m in ship["predicted"]}
        _lift_bars(fig, rel, f"observed: {ship['arm_id']}")
    top = ship["best_on_objective"]
    if top["arm_id"] != ship["arm_id"]:
        _lift_bars(fig, top["predicted"], f"predicted: {top['arm_id']} (best on objective, P(feasible) {top['p_feasible']:.2f})")
    fig.update_layout(title=f"ship candidate {ship['arm_id']} (P(feasible) {ship['p_feasible']:.2f}): "
                      f"{', '.join(f'{k}={v:.3g}' for k, v in ship['values'].items())}", barmode="group",
                      yaxis_title="change against control (%)")
    return fig


def _lift_bars(fig: go.Figure, lifts: dict[str, dict[str, Any]], name: str) -> None:
    lifts = {m: v for m, v in lifts.items() if v.get("value") is not None}
    fig.add_trace(go.Bar(x=list(lifts), y=[PERCENT * v["value"] for v in lifts.values()], name=name,
                         error_y={"type": "data", "symmetric": False,
                                  "array": [PERCENT * (v["upper"] - v["value"]) for v in lifts.values()],
                                  "arrayminus": [PERCENT * (v["value"] - v["lower"]) for v in lifts.values()]}))


#: Arms named in a PNG's legend (the heaviest); a long experiment serves dozens.
MAX_LEGEND_ARMS = 8


def save_pngs(figures: dict[str, go.Figure], out_dir: str | Path) -> list[Path]:
    """Draw each Plotly figure's traces with matplotlib into ``out_dir/<name>.png``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        ax = plt.figure(figsize=(9, 5.5)).gca()
        _draw_bars(ax, [t for t in fig.data if t.type == "bar"])
        _draw_scatters(ax, [t for t in fig.data if t.type == "scatter" and not t.stackgroup])
        _draw_stack(ax, [t for t in fig.data if t.type == "scatter" and t.stackgroup])
        ax.set_title(fig.layout.title.text or name, fontsize=10)
        ax.set_xlabel(fig.layout.xaxis.title.text or "")
        ax.set_ylabel(fig.layout.yaxis.title.text or "")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        path = out / f"{name}.png"
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=110)
        plt.close(ax.figure)
        paths.append(path)
    return paths


def _draw_bars(ax: Any, bars: list[Any]) -> None:
    for i, t in enumerate(bars):
        offset = (i - (len(bars) - 1) / 2) * 0.35
        xs = list(range(len(t.x)))
        err = None
        if t.error_y and t.error_y.array is not None:
            err = [t.error_y.arrayminus, t.error_y.array] if t.error_y.arrayminus is not None else t.error_y.array
        ax.bar([x + offset for x in xs], t.y, width=0.35, label=t.name, yerr=err, capsize=3)
        ax.set_xticks(xs, list(t.x))
    if bars:
        ax.axhline(0.0, color="black", linewidth=0.8)


def _draw_scatters(ax: Any, traces: list[Any]) -> None:
    """Points, bands, lines and arms with error bars; the view is the models' points (far-off arms with a
    handful of members would squash it)."""
    view = [t for t in traces if t.name in ("feasible points", "infeasible points") and len(t.x)]
    for t in traces:
        if t.fill == "toself":
            ax.fill(t.x, t.y, alpha=0.25, label=t.name, color="#3182bd")
        elif t.mode in ("lines", "lines+markers"):
            ax.plot(t.x, t.y, label=t.name, linestyle="--" if t.line.dash else "-", color=t.line.color,
                    marker="o" if t.mode == "lines+markers" else None, ms=4, zorder=4)
        elif t.error_x and t.error_x.array is not None:
            ax.errorbar(t.x, t.y, xerr=[t.error_x.arrayminus, t.error_x.array],
                        yerr=[t.error_y.arrayminus, t.error_y.array], fmt="o", ms=4, label=t.name,
                        color=t.marker.color, elinewidth=0.8, capsize=2)
        elif t.name == "current distribution":
            ax.scatter(t.x, t.y, s=[4 * v for v in t.marker.size], facecolors="none", edgecolors=t.marker.line.color,
                       linewidths=1.5, label=t.name, zorder=5)
        else:
            ax.scatter(t.x, t.y, s=6, label=t.name, color=t.marker.color)
    if view:
        xs = [x for t in view for x in t.x] + [x for t in traces if t.name == "guardrail limit" for x in t.x]
        ys = [y for t in view for y in t.y]
        pad_x, pad_y = 0.15 * (max(xs) - min(xs) or 1.0), 0.15 * (max(ys) - min(ys) or 1.0)
        ax.set_xlim(min(xs) - pad_x, max(xs) + pad_x)
        ax.set_ylim(min(ys) - pad_y, max(ys) + pad_y)


def _draw_stack(ax: Any, traces: list[Any]) -> None:
    if not traces:
        return
    heaviest = {t.name for t in sorted(traces, key=lambda t: -sum(t.y))[:MAX_LEGEND_ARMS]}
    labels = [t.name if t.name in heaviest else "_nolegend_" for t in traces]
    ax.stackplot(traces[0].x, *[t.y for t in traces], labels=labels)
    ax.set_ylim(0.0, 1.0)
