"""Refit benchmark: one refit end to end, the same after a week of hourly data, and many experiments in the pool.

``bayesopt bench refit [--quick] [--out PATH]`` writes JSON. Three measurements, all through the production
path (:func:`jobs.refit.refit_experiment` against a real embedded Redis, with the real policy):

1. ``day``: one refit (load, fit, sample, validate, publish) after 24 hourly windows in which ``arms`` distinct
   lattice arms were served, at the modelling benchmark's size (3 metrics, 6 parameters, 1,000 arms, 4,096
   candidates, 10,000 draws);
2. ``week``: the same experiment after 7 x 24 windows, the same arms recurring, so 7 times the stored rows;
   its time must stay within 2x of ``day`` (the models see pooled arms, not rows);
3. ``pool``: ``experiments`` smaller experiments refitted one by one in this process (with torch's default
   threads, then with one thread), then through a :class:`jobs.pool.RefitPool` of ``workers`` processes, after
   a warm-up (start the workers, one untimed refit each), with the speed-ups. Every refit is cold (no warm
   start) and for the same period (``force``).

Wall-clock figures on a shared machine move with its load: the load averages at start and end are recorded,
and so are CPU seconds, which move less.

History is synthetic and written straight into the store (versions and observation statistics, as serving
and the analytics pipeline would have); each window serves control plus ``arms / 24`` arms.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution, normalize_weights
from bayesopt.lattice import lattice_arm
from bayesopt.spec import ExperimentSpec
from param_store import EmbeddedRedis, ExperimentState, ParamStore

#: A fixed start so periods (and seeds) are the same in every run: 2024-01-01T00:00Z, a window per hour.
T0 = 1_704_067_200.0
HOUR = 3600.0
DEFAULT_OUT = "bench-results/refit.json"

FULL = {
    "single": {"arms": 1000, "candidates": 4096, "draws": 10_000},
    "pool": {"experiments": 20, "arms": 100, "candidates": 512, "draws": 1000},
}
QUICK = {
    "single": {"arms": 200, "candidates": 1024, "draws": 2000},
    "pool": {"experiments": 8, "arms": 60, "candidates": 256, "draws": 500},
}


def bench_spec(name: str, *, candidates: int, draws: int) -> ExperimentSpec:
    """3 metrics (an objective, two relative guardrails) over 6 parameters."""
    return ExperimentSpec.from_dict({
        "name": name,
        "parameters": [{"name": f"x{i}", "lower": 0.0, "upper": 1.0} for i in range(1, 7)],
        "control": {f"x{i}": 0.5 for i in range(1, 7)},
        "metrics": [{"name": "sessions", "kind": "rate"}, {"name": "applies", "kind": "rate"},
                    {"name": "dwell", "kind": "mean"}],
        "objectives": [{"metric": "sessions"}],
        "guardrails": [{"metric": "applies", "lower": -0.01, "relative": True},
                       {"metric": "dwell", "lower": -0.02, "relative": True}],
        "traffic": {"control_share": 0.2},
        "policy": {"max_arms": 16, "num_candidates": candidates, "num_draws": draws},
    })


def _truth(metric: str, u: np.ndarray) -> float:
    """Smooth effects of the unit-cube point ``u`` (length 6)."""
    if metric == "sessions":
        return 0.30 + 0.04 * math.exp(-float(np.sum((u - 0.65) ** 2)) / 0.3)
    if metric == "applies":
        return 0.10 - 0.01 * float(u[0] - 0.5) + 0.005 * float(u[1] - 0.5)
    return 30.0 + 2.0 * float(np.sin(3 * u[2])) - float(u[3])


class History:
    """An experiment with synthetic hourly windows: ``arms`` lattice arms, each window serving a rotating slice."""

    def __init__(self, store: ParamStore, spec: ExperimentSpec, arms: int, *, seed: int) -> None:
        self.store, self.spec = store, spec
        self.rng = np.random.default_rng(seed)
        points: dict[str, tuple[dict[str, float], np.ndarray]] = {}
        while len(points) < arms:
            u = self.rng.random(6)
            arm, values = lattice_arm(spec, u)
            if values != dict(spec.control):
                points[arm] = (values, np.array([values[f"x{i}"] for i in range(1, 7)]))
        self.arms = sorted(points.items())
        self.per_window = math.ceil(arms / 24)
        self.windows = 0
        store.create_experiment(spec)
        store.transition(spec.name, ExperimentState.RUNNING)

    def add_windows(self, count: int) -> None:
        for _ in range(count):
            self._window(self.windows)
            self.windows += 1

    def _window(self, w: int) -> None:
        start = (w % 24) * self.per_window
        served = self.arms[start : start + self.per_window] or self.arms[: self.per_window]
        share = self.spec.traffic.control_share
        weights = normalize_weights([share] + [(1 - share) / len(served)] * len(served))
        control_u = np.full(6, 0.5)
        arms = [Arm(CONTROL_ARM_ID, dict(self.spec.control), weights[0])]
        arms += [Arm(a, values, wt) for (a, (values, _)), wt in zip(served, weights[1:], strict=True)]
        created = T0 + w * HOUR
        dist = ParameterDistribution(
            experiment=self.spec.name, version=self.store.next_version(self.spec.name), arms=tuple(arms),
            spec_hash=self.spec.spec_hash, control_share=share, created_at=created, valid_from=created,
        )
        self.store.publish(dist)
        rows = [self._row(dist.version, CONTROL_ARM_ID, m, control_u, 2000) for m in self.spec.metric_names]
        rows += [self._row(dist.version, a, m, u, 400) for a, (_, u) in served for m in self.spec.metric_names]
        self.store.add_observations(self.spec.name, rows)

    def _row(self, version: int, arm: str, metric: str, u: np.ndarray, count: int) -> dict[str, Any]:
        mean = _truth(metric, u)
        if metric == "dwell":  # a mean metric: outcomes with standard deviation 10
            total = self.rng.normal(mean, 10.0 / math.sqrt(count)) * count
            return {"version": version, "arm_id": arm, "metric": metric, "count": count, "sum": total,
                    "sum_sq": total * total / count + 100.0 * (count - 1)}
        total = float(self.rng.binomial(count, mean))
        return {"version": version, "arm_id": arm, "metric": metric, "count": count, "sum": total, "sum_sq": total}


def _refit(url: str, namespace: str, name: str, now: float, repeats: int,
           warm_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """``repeats`` refits of the same period (``force``); wall and CPU seconds of each, stage timings of the fastest.

    Cold (no model state) unless ``warm_from`` is given: a saved model state (``ParamStore.load_model_state``),
    put back before each refit, which warm-starts from it as the hourly job does from the previous version's.
    The fastest of several is the figure least disturbed by whatever else the machine runs.
    """
    from jobs.refit import RefitOptions, refit_experiment

    store = ParamStore.from_url(url, namespace=namespace)
    runs = []
    for _ in range(repeats):
        if warm_from is None:
            store.clear_model_state(name)  # cold: compare data growth, not warm starts
        else:
            store.save_model_state(name, warm_from["version"], warm_from["state"])
        cpu = time.process_time()
        record = refit_experiment(url, namespace, name, now=now, options=RefitOptions(activation_delay_s=0.0, force=True))
        if record.status.value != "published":
            raise RuntimeError(f"benchmark refit of {name} did not publish: {record.summary()} {record.problems}")
        runs.append((record.duration_s, time.process_time() - cpu, record))
    best = min(runs, key=lambda r: r[0])
    return {
        "total_s": best[0], "cpu_s": best[1], "timings": best[2].timings, "rows": best[2].observations,
        "wall_s_each": [r[0] for r in runs], "cpu_s_each": [r[1] for r in runs],
        "median_s": float(np.median([r[0] for r in runs])),
        "arms_published": len(store.current(name).arms),
    }


def bench_single(url: str, namespace: str, size: dict[str, int], repeats: int, log) -> dict[str, Any]:
    store = ParamStore.from_url(url, namespace=namespace)
    warm = bench_spec("single-warm-up", candidates=256, draws=500)  # the process's first fit pays one-off costs
    History(store, warm, 60, seed=0).add_windows(24)
    t = time.perf_counter()
    _refit(url, namespace, warm.name, T0 + 24 * HOUR, 1)
    log(f"warm-up refit (untimed) {time.perf_counter() - t:.1f} s")
    spec = bench_spec("single", candidates=size["candidates"], draws=size["draws"])
    history = History(store, spec, size["arms"], seed=1)
    out: dict[str, Any] = {"size": {**size, "metrics": 3, "parameters": 6}, "repeats": repeats}
    for label, days in (("day", 1), ("week", 7)):
        t = time.perf_counter()
        history.add_windows(days * 24 - history.windows)
        log(f"{label}: {history.windows} windows written in {time.perf_counter() - t:.1f} s; refitting")
        result = _refit(url, namespace, spec.name, T0 + history.windows * HOUR, repeats)
        result["windows"] = history.windows
        out[label] = result
        log(f"{label}: refit {result['total_s']:.1f} s (each: {', '.join(f'{w:.1f}' for w in result['wall_s_each'])}; "
            f"cpu {result['cpu_s']:.1f} s)  " + ", ".join(f"{k} {v:.2f}" for k, v in result["timings"].items()))
    out["week_over_day"] = out["week"]["total_s"] / out["day"]["total_s"]
    out["week_over_day_cpu"] = out["week"]["cpu_s"] / out["day"]["cpu_s"]
    out["week_within_2x_of_day"] = out["week_over_day"] <= 2.0
    return out


def bench_pool(url: str, namespace: str, size: dict[str, int], workers: int, log) -> dict[str, Any]:
    from jobs.pool import RefitPool
    from jobs.refit import RefitOptions, refit_experiment

    store = ParamStore.from_url(url, namespace=namespace)
    spec_size = {"candidates": size["candidates"], "draws": size["draws"]}
    names = [f"pool-{i:02d}" for i in range(size["experiments"])]
    for i, name in enumerate(names):
        History(store, bench_spec(name, **spec_size), size["arms"], seed=100 + i).add_windows(24)
    warm_names = [f"warm-{i:02d}" for i in range(workers)]  # each worker's first fit pays one-off costs: not timed
    for i, name in enumerate(warm_names):
        History(store, bench_spec(name, **spec_size), size["arms"], seed=900 + i).add_windows(24)
    import torch

    def one_by_one(threads: int) -> tuple[float, list]:
        """Every refit in this process, cold, for the same period (``force``), with ``threads`` torch threads."""
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            store.clear_model_state(*names)
            t = time.perf_counter()
            records = [refit_experiment(url, namespace, n, now=T0 + 24 * HOUR, options=options) for n in names]
            return time.perf_counter() - t, records
        finally:
            torch.set_num_threads(before)

    options = RefitOptions(activation_delay_s=0.0, force=True)
    threads = torch.get_num_threads()
    sequential_s, sequential = one_by_one(threads)
    log(f"pool: {len(names)} refits one by one ({threads} torch threads) in {sequential_s:.1f} s")
    single_thread_s, single_thread = one_by_one(1)
    log(f"pool: {len(names)} refits one by one (1 torch thread) in {single_thread_s:.1f} s")
    store.clear_model_state(*names)  # the pool starts as cold
    with RefitPool(workers) as pool:
        t = time.perf_counter()
        pool.warm_up()
        pool.refit_all(url, namespace, warm_names, now=T0 + 24 * HOUR, options=options)
        warm_up_s = time.perf_counter() - t
        t = time.perf_counter()
        pooled = pool.refit_all(url, namespace, names, now=T0 + 24 * HOUR, options=options)
        pool_s = time.perf_counter() - t
    log(f"pool: {len(names)} refits in {pool.max_workers} workers in {pool_s:.1f} s (+{warm_up_s:.1f} s warm-up)")
    return {
        "size": {**size, "metrics": 3, "parameters": 6, "windows": 24},
        "workers": pool.max_workers,
        "threads_per_worker": pool.threads_per_worker,
        "sequential_torch_threads": threads,
        "sequential_s": sequential_s,
        "sequential_1_thread_s": single_thread_s,
        "pool_s": pool_s,
        "pool_warm_up_s": warm_up_s,
        "speedup": sequential_s / pool_s,
        "speedup_over_1_thread": single_thread_s / pool_s,
        "speedup_with_warm_up": sequential_s / (pool_s + warm_up_s),
        "statuses": dict(Counter(r.status.value for r in [*sequential, *single_thread, *pooled])),
        "cpu_s": {"sequential": sum(r.timings["cpu"] for r in sequential),
                  "sequential_1_thread": sum(r.timings["cpu"] for r in single_thread),
                  "pool": sum(r.timings["cpu"] for r in pooled)},
        "mean_refit_s": {"sequential": float(np.mean([r.duration_s for r in sequential])),
                         "sequential_1_thread": float(np.mean([r.duration_s for r in single_thread])),
                         "pool": float(np.mean([r.duration_s for r in pooled]))},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bayesopt bench refit", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON output path (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run (minutes, not tens)")
    parser.add_argument("--workers", type=int, default=None, help="pool size (default: CPU count)")
    parser.add_argument("--skip", choices=("single", "pool"), action="append", default=[], help="leave a part out")
    parser.add_argument("--repeats", type=int, default=None, help="refits per single measurement (default 3, quick 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in this process (default: torch's own, usually one per core)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(f"[bench refit] {msg}", flush=True)

    result: dict[str, Any] = {
        "benchmark": "refit", "quick": args.quick, "started_at": time.time(), "load_average_at_start": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "platform": platform.platform()},
    }
    from jobs.executor import bounded_workers

    with EmbeddedRedis() as server:
        if "single" not in args.skip:
            repeats = args.repeats or (2 if args.quick else 3)
            result["single"] = bench_single(server.url, "bench", sizes["single"], repeats, log)
        if "pool" not in args.skip:
            result["pool"] = bench_pool(server.url, "bench", sizes["pool"], bounded_workers(args.workers), log)
    write_result(result, args.out, log)
    return 0


def write_result(result: dict[str, Any], out: str | Path, log) -> None:
    """Stamp the load average at the end (the machine may be shared) and write ``result`` as JSON to ``out``."""
    result["load_average_at_end"] = os.getloadavg()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True))
    log(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
