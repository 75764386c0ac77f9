"""Multi-task benchmark: does a biased simulator make the online model better, and does the guard catch a bad one?

``bayesopt bench multitask [--seeds N] [--online-arms K] [--simulator-points P] [--quick] [--out PATH]`` writes
JSON (default ``bench-results/multitask.json``). For each world seed (the ``scarce`` ranking world, 2 weights,
3 metrics) and each simulator preset of :mod:`simulations.offline_simulator` (``good``, ``biased``,
``useless``):

- ``K`` online arms (control plus ``K - 1`` random lattice arms) observed in one window with
  ``ONLINE_SESSIONS`` sessions each (Gaussian noise with the metric's binomial or Poisson variance), and ``P``
  simulator points;
- four models per metric, each predicting the effect relative to control at ``HELD_OUT`` random settings
  whose truth (the world's exact expectation) no model saw: ``online`` (the single-task GP on the online arms),
  ``naive`` (naive pooling: simulator rows treated as online arms of the same window, one single-task GP),
  ``multitask`` (the multi-task GP, always used) and ``guarded`` (what the refit uses: the multi-task GP
  where the guard accepts it, else the online GP);
- per model: RMSE, mean predictive log-likelihood of the true effect (Gaussian, the model's latent posterior)
  and the share of the truth inside the 95% interval, averaged over the 3 metrics; per simulator, how often
  the guard chose the multi-task model and the learned correlation.

Then ``refit_timing``: one whole ``GPPolicy.propose`` (3 metrics, fits, candidates and Thompson sampling with
the world spec's policy) with ``TIMING_ARMS`` online arms and ``TIMING_POINTS`` simulator points per metric, cold
and warm-started from its own model state.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bayesopt.device import as_tensor, seeded, to_numpy
from bayesopt.diagnostics import Z95
from bayesopt.gp import exact_linalg, fit_model
from bayesopt.lattice import from_unit, lattice_arm
from bayesopt.model_choice import MODEL_MULTITASK, fit_metric_models
from bayesopt.observation_table import param_column, simulator_table
from bayesopt.pooling import pool
from bayesopt.spec import ExperimentSpec
from simulations.loop import LoopConfig, build_spec, build_world
from simulations.offline_simulator import SIMULATOR_PRESETS, OfflineSimulator, simulator_preset

DEFAULT_OUT = "bench-results/multitask.json"
#: Sessions per online arm: about eight hours of the scarce world's 5,000 members an hour over 20 arms.
ONLINE_SESSIONS = 2000
HELD_OUT = 400
TIMING_ARMS, TIMING_POINTS = 50, 5000
MODELS = ("online", "naive", "multitask", "guarded")
GOALS = {"rmse_cut_vs_online_biased": 0.30, "coverage": (0.90, 0.98)}


def world_and_spec(seed: int) -> tuple[Any, ExperimentSpec]:
    config = LoopConfig.for_variant("scarce", seed=seed)
    world = build_world(config)
    return world, dataclasses.replace(build_spec(world, config), simulator_metrics=tuple(world.metric_names))


def online_table(world: Any, spec: ExperimentSpec, num_arms: int, rng: np.random.Generator) -> pd.DataFrame:
    """Control plus ``num_arms - 1`` random lattice arms, one window, ``ONLINE_SESSIONS`` sessions each."""
    d = len(spec.parameter_names)
    arms = [("control", dict(spec.control))] + [lattice_arm(spec, u) for u in rng.random((num_arms - 1, d))]
    values = np.array([[v[p] for p in spec.parameter_names] for _, v in arms])  # k x d
    truth = world.expected_metrics(values)  # k x m
    rows = []
    for i, (arm, _) in enumerate(arms):
        for j, metric in enumerate(world.metric_names):
            t = truth[i, j]
            var = t * (1 - t) if world.metric_kinds[metric] == "rate" else max(t, 1e-6)
            se = float(np.sqrt(var / ONLINE_SESSIONS))
            rows.append({"window": 1, "arm_id": arm, "metric": metric, "source": "online", "count": float(ONLINE_SESSIONS),
                         "mean": float(t + rng.normal() * se), "std_error": se,
                         **{param_column(p): float(v) for p, v in zip(spec.parameter_names, values[i], strict=True)}})
    return pd.DataFrame(rows).drop_duplicates(["arm_id", "metric"]).reset_index(drop=True)


def sim_table(sim: OfflineSimulator, spec: ExperimentSpec, num_points: int, seed: int) -> pd.DataFrame:
    rows = sim.rows(num_points, run="replay", seed=seed)
    frame = pd.DataFrame([{"run": r["run"], "metric": r["metric"], "count": r["count"], "sum": r["mean"] * r["count"],
                           "sum_sq": (r["std_error"] ** 2 * r["count"]) * (r["count"] - 1) + r["mean"] ** 2 * r["count"],
                           **{param_column(p): v for p, v in r["parameters"].items()}} for r in rows])
    return simulator_table(spec, frame)


def naive_table(spec: ExperimentSpec, online: pd.DataFrame, sim: pd.DataFrame) -> pd.DataFrame:
    """Simulator rows as if they were online arms of the online window."""
    fake = sim.assign(source="online", window=1)
    fake["arm_id"] = fake.groupby([param_column(p) for p in spec.parameter_names], sort=False).ngroup().map(lambda i: f"sim{i}")
    return pd.concat([online, fake], ignore_index=True)


def score(model: Any, X: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE, mean log density of the truth, 95% coverage of ``n`` true effects at ``n x d`` unit points."""
    with torch.no_grad(), exact_linalg():
        post = model.posterior(as_tensor(X))
        mean = to_numpy(post.mean.squeeze(-1))
        var = np.maximum(to_numpy(post.variance.squeeze(-1)), 1e-300)
    err = mean - truth
    ll = -0.5 * (np.log(2 * np.pi * var) + err**2 / var)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "log_likelihood": float(np.mean(ll)),
            "coverage": float(np.mean(np.abs(err) <= Z95 * np.sqrt(var)))}


def seed_cases(seed: int, simulators: list[str], num_arms: int, num_points: int) -> dict[str, dict[str, Any]]:
    """:func:`one_case` of every simulator on one world seed (the online data and held-out truth are shared)."""
    world, spec = world_and_spec(seed)
    rng = np.random.default_rng([seed, 31])
    online = online_table(world, spec, num_arms, rng)
    held = rng.random((HELD_OUT, len(spec.parameter_names)))  # n x d unit points
    control = world.expected_metrics(world.points(spec.control))[0]  # m
    truth = world.expected_metrics(world.points([from_unit(spec, u) for u in held])) - control  # n x m
    base = OfflineSimulator(world, spec, simulator_preset(simulators[0]), seed=seed)
    return {name: one_case(seed, world, spec, online, held, truth, base.with_config(simulator_preset(name)), num_points)
            for name in simulators}


def one_case(seed: int, world: Any, spec: ExperimentSpec, online: pd.DataFrame, held: np.ndarray, truth: np.ndarray,
             simulator: OfflineSimulator, num_points: int) -> dict[str, Any]:
    """Every model's scores on one world seed and simulator, per metric."""
    sim = sim_table(simulator, spec, num_points, seed)
    table = pd.concat([online, sim], ignore_index=True)
    with seeded(seed):
        pooled = pool(spec, table)
        fitted = fit_metric_models(spec, pooled, table)
        naive = pool(spec, naive_table(spec, online, sim))
        per_metric = {}
        for j, metric in enumerate(world.metric_names):
            models = {
                "online": fit_model(pooled.metrics[metric]),
                "naive": fit_model(naive.metrics[metric]),
                "multitask": fitted.multitask[metric],
                "guarded": fitted.models[metric],
            }
            report = fitted.simulator[metric]
            per_metric[metric] = {name: score(m, held, truth[:, j]) for name, m in models.items()}
            per_metric[metric]["guard"] = {"model": report["model"], "reason": report["reason"],
                                           "correlation": report.get("correlation"), "bias": report.get("bias")}
    return per_metric


def refit_timing(seed: int = 0) -> dict[str, Any]:
    """Seconds of one whole ``GPPolicy.propose`` at ``TIMING_ARMS`` arms and ``TIMING_POINTS`` simulator points."""
    from bayesopt.policy import GPPolicy

    world, spec = world_and_spec(seed)
    rng = np.random.default_rng([seed, 41])
    table = pd.concat([online_table(world, spec, TIMING_ARMS, rng),
                       sim_table(OfflineSimulator(world, spec, simulator_preset("biased"), seed=seed), spec, TIMING_POINTS, seed)],
                      ignore_index=True)
    policy = GPPolicy()
    start = time.perf_counter()
    cold = policy.propose(spec, table, seed=seed)
    t_cold = time.perf_counter() - start
    start = time.perf_counter()
    warm = policy.propose(spec, table, seed=seed, warm_start=cold.model_state)
    t_warm = time.perf_counter() - start
    models = {m: d.get("simulator", {}).get("model") for m, d in cold.diagnostics["models"].items()}
    return {"online_arms": TIMING_ARMS, "simulator_points": TIMING_POINTS, "metrics": len(spec.metric_names),
            "num_candidates": spec.policy.num_candidates, "num_draws": spec.policy.num_draws,
            "cold": {"total_s": t_cold, **{k: v for k, v in cold.timings.items()}},
            "warm": {"total_s": t_warm, **{k: v for k, v in warm.timings.items()}},
            "models_used": models, "goal_s": 20.0}


def summarise_cases(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of each model's metric-averaged scores, and the guard's choices."""
    out: dict[str, Any] = {}
    for model in MODELS:
        per_seed = {k: [np.mean([c[m][model][k] for m in c]) for c in cases] for k in ("rmse", "log_likelihood", "coverage")}
        out[model] = {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                      for k, v in per_seed.items()}
    choices = [c[m]["guard"]["model"] for c in cases for m in c]
    corr = [c[m]["guard"]["correlation"] for c in cases for m in c if c[m]["guard"]["correlation"] is not None]
    out["guard"] = {"multitask_share": choices.count(MODEL_MULTITASK) / len(choices),
                    "correlation": {"mean": float(np.mean(corr)), "sd": float(np.std(corr))} if corr else None}
    online, guarded = out["online"]["rmse"]["mean"], out["guarded"]["rmse"]["mean"]
    out["rmse_cut_vs_online"] = {"multitask": 1 - out["multitask"]["rmse"]["mean"] / online, "guarded": 1 - guarded / online,
                                 "naive": 1 - out["naive"]["rmse"]["mean"] / online}
    return out


LOOP_COLUMNS = ("cumulative_regret_pct_h", "hours_to_1pct", "unsafe_pct", "worst_hour_unsafe_pct", "final_lift_pct",
                "refit_s_mean")


def loop_table(folder: Path) -> dict[str, Any]:
    """The closed-loop comparison from ``folder/<variant>-<simulator>/summaries.csv`` (``bayesopt simulate
    --simulator ...`` runs, ``none`` without one): per run the summary columns, regret against ``none`` and the
    metric-hours drawn from the multi-task model (from the runs' hourly records), then one line per simulator."""
    rows = []
    for path in sorted(folder.glob("*-*/summaries.csv")):
        variant, simulator = path.parent.name.split("-", 1)
        for record in pd.read_csv(path).to_dict("records"):
            run = path.parent / "runs" / variant / f"{record['policy']}-seed{int(record['seed'])}-stream{int(record['stream'])}.json"
            rows.append({"variant": variant, "simulator": simulator, "seed": int(record["seed"]),
                         **{c: float(record[c]) for c in LOOP_COLUMNS}, **multitask_hours(run)})
    reference = {(r["variant"], r["seed"]): r["cumulative_regret_pct_h"] for r in rows if r["simulator"] == "none"}
    lines = ["| variant | simulator | seed | cumulative regret (%·h) | vs none | hours to within 1% | unsafe traffic (%) "
             "| worst hour (%) | final lift (%) | metric-hours on the multi-task model | refit s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ref = reference.get((r["variant"], r["seed"]))
        r["regret_vs_none"] = None if ref is None else r["cumulative_regret_pct_h"] / ref - 1
        change = "" if r["regret_vs_none"] is None else f"{100 * r['regret_vs_none']:+.0f}%"
        lines.append(f"| {r['variant']} | {r['simulator']} | {r['seed']} | {r['cumulative_regret_pct_h']:.1f} | {change} | "
                     f"{_hours(r['hours_to_1pct'])} | {r['unsafe_pct']:.1f} | {r['worst_hour_unsafe_pct']:.1f} | "
                     f"{r['final_lift_pct']:.2f} | {_share(r)} | {r['refit_s_mean']:.1f} |")
    summary = loop_summary(rows)
    lines += ["", "| variant | simulator | runs | mean regret (%·h) | vs none (ratio of means) | runs within 1% | "
              "mean unsafe (%) | worst hour (%) | mean final lift (%) | metric-hours on the multi-task model |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for g in summary:
        change = "" if g["regret_vs_none"] is None else f"{100 * g['regret_vs_none']:+.1f}%"
        lines.append(f"| {g['variant']} | {g['simulator']} | {g['runs']} | {g['regret_mean']:.1f} | {change} | "
                     f"{g['runs_within_1pct']} of {g['runs']} | {g['unsafe_mean']:.1f} | {g['worst_hour_max']:.1f} | "
                     f"{g['final_lift_mean']:.2f} | {_share(g)} |")
    (folder / "table.md").write_text("\n".join(lines) + "\n")
    doc = {"runs": [_finite_doc(r) for r in rows], "summary": [_finite_doc(g) for g in summary]}
    (folder / "summary.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    print("\n".join(lines))
    return doc


def multitask_hours(run: Path) -> dict[str, int]:
    """Metric-hours of a run's JSON drawn from the multi-task model, and all metric-hours with a model record."""
    if not run.exists():
        return {"multitask_hours": 0, "metric_hours": 0}
    hours = json.loads(run.read_text()).get("hours", [])
    models = [m for h in hours for m in (h.get("models") or {}).values()]
    return {"multitask_hours": sum(m == "multitask" for m in models), "metric_hours": len(models)}


def loop_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (variant, simulator): means over runs, and the ratio of mean regret to ``none``'s on the same seeds."""
    out = []
    for (variant, simulator), group in pd.DataFrame(rows).groupby(["variant", "simulator"], sort=False):
        seeds = set(group["seed"])
        none = [r["cumulative_regret_pct_h"] for r in rows
                if r["variant"] == variant and r["simulator"] == "none" and r["seed"] in seeds]
        regret = float(group["cumulative_regret_pct_h"].mean())
        out.append({"variant": variant, "simulator": simulator, "runs": int(len(group)), "regret_mean": regret,
                    "regret_vs_none": regret / float(np.mean(none)) - 1 if len(none) == len(seeds) else None,
                    "runs_within_1pct": int(np.isfinite(group["hours_to_1pct"]).sum()),
                    "unsafe_mean": float(group["unsafe_pct"].mean()),
                    "worst_hour_max": float(group["worst_hour_unsafe_pct"].max()),
                    "final_lift_mean": float(group["final_lift_pct"].mean()),
                    "multitask_hours": int(group["multitask_hours"].sum()), "metric_hours": int(group["metric_hours"].sum())})
    return out


def _share(row: dict[str, Any]) -> str:
    return f"{row['multitask_hours']} of {row['metric_hours']}" if row["metric_hours"] else "-"


def _hours(value: float) -> str:
    return "never" if not np.isfinite(value) else f"{value:g}"


def _finite_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in doc.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bayesopt bench multitask", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--online-arms", type=int, default=20)
    parser.add_argument("--simulator-points", type=int, default=500)
    parser.add_argument("--simulators", nargs="+", default=list(SIMULATOR_PRESETS), choices=list(SIMULATOR_PRESETS))
    parser.add_argument("--quick", action="store_true", help="2 seeds, no refit timing (a smoke run)")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--loop-table", default=None, metavar="FOLDER",
                        help="instead: tabulate closed-loop runs in FOLDER/<variant>-<simulator>/ (table.md, summary.json)")
    args = parser.parse_args(argv)
    if args.loop_table:
        loop_table(Path(args.loop_table))
        return 0
    seeds = 2 if args.quick else args.seeds
    started = time.perf_counter()
    doc: dict[str, Any] = {
        "benchmark": "multitask", "world": "scarce", "seeds": seeds, "online_arms": args.online_arms,
        "simulator_points": args.simulator_points, "online_sessions_per_arm": ONLINE_SESSIONS, "held_out": HELD_OUT,
        "presets": {n: vars(SIMULATOR_PRESETS[n]) for n in args.simulators},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version()},
        "simulators": {},
    }
    by_seed = []
    for seed in range(seeds):
        by_seed.append(seed_cases(seed, args.simulators, args.online_arms, args.simulator_points))
        print(f"seed {seed}: " + json.dumps({n: {m: round(float(np.mean([c[x][m]["rmse"] for x in c])), 5) for m in MODELS}
                                             for n, c in by_seed[-1].items()}), flush=True)
    for name in args.simulators:
        cases = [s[name] for s in by_seed]
        doc["simulators"][name] = {"summary": summarise_cases(cases), "per_seed": cases}
        print(f"{name}: " + json.dumps({m: round(doc['simulators'][name]['summary'][m]['rmse']['mean'], 5) for m in MODELS}), flush=True)
    if not (args.quick or args.no_timing):
        doc["refit_timing"] = refit_timing()
        print("refit timing: " + json.dumps({k: round(doc["refit_timing"][k]["total_s"], 2) for k in ("cold", "warm")}), flush=True)
    doc["wall_s"] = time.perf_counter() - started
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False, default=float))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
