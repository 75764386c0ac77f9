"""Scale-out benchmark: many refits through each executor, and one refit's cost as history grows to 30 days.

``bayesopt bench scale [--experiments N] [--days D] [--held N] [--skip PART] [--out PATH]`` writes JSON
(default ``bench-results/scale.json``). Two measurements, through the production path
(:func:`jobs.refit.refit_experiment` against a real embedded Redis, the real policy), on the refit benchmark's
pool-sized experiments (3 metrics, 6 parameters, 100 lattice arms served over each day, 512 candidates, 1,000
draws; ``simulations.bench_refit.History``):

1. ``executors``: ``experiments`` experiments with a day of hourly windows each, refitted cold for the same
   period one by one in this process (one torch thread), through the process pool and as Ray tasks on a local
   Ray instance, each after an untimed warm-up; per-experiment refit times (their distribution is what the
   docs project throughput from), and Ray's own overhead per task, measured with no-op tasks.
2. ``history``: one experiment refitted after 1 day and after ``days`` days of hourly windows, cold and
   warm-started from the refit an hour before (as the hourly job does), best of ``repeats`` each, with the
   optimiser's iteration counts and the peak resident memory of this process after each.
3. ``serving``: ``bayesopt serve --workers 1`` on a store holding one experiment and on one holding
   ``--held`` experiments; the same closed-loop load as ``bench serving`` (parameter requests spread over every
   held experiment) on each: requests per second, p50 and p99 latency, and the worker's resident memory once
   it holds them all, from which the memory per held experiment.

Wall-clock figures on a shared machine move with its load: load averages at start and end are recorded.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bayesopt.rollup import ROLL_EVERY
from param_store import EmbeddedRedis, ParamStore
from simulations.bench_refit import FULL, HOUR, T0, History, _refit, bench_spec, write_result

DEFAULT_OUT = "bench-results/scale.json"
SIZE = FULL["pool"]  # arms, candidates, draws of one "realistic" experiment
WARM_UP_EXPERIMENTS = 2


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _distribution(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()), "min": float(a.min())}


def _experiments(store: ParamStore, prefix: str, count: int, seed: int) -> list[str]:
    names = [f"{prefix}-{i:03d}" for i in range(count)]
    for i, name in enumerate(names):
        spec = bench_spec(name, candidates=SIZE["candidates"], draws=SIZE["draws"])
        History(store, spec, SIZE["arms"], seed=seed + i).add_windows(24)
    return names


def _through(executor, url: str, names: list[str], warm: list[str], options) -> tuple[float, float, list]:
    """(warm-up s, timed s, records) of refitting ``names`` on ``executor`` after ``warm`` untimed."""
    t = time.perf_counter()
    executor.warm_up()
    executor.refit_all(url, "bench", warm, now=T0 + 24 * HOUR, options=options)
    warm_s = time.perf_counter() - t
    t = time.perf_counter()
    records = executor.refit_all(url, "bench", names, now=T0 + 24 * HOUR, options=options)
    return warm_s, time.perf_counter() - t, records


def _ray_overhead_s(executor, tasks: int = 200) -> float:
    """Seconds per no-op Ray task, submitted and awaited in a batch like refits (scheduling, serialising)."""
    import ray

    noop = ray.remote(num_cpus=executor.threads_per_worker)(lambda: None)
    ray.get([noop.remote() for _ in range(executor.max_workers)])
    t = time.perf_counter()
    ray.get([noop.remote() for _ in range(tasks)])
    return (time.perf_counter() - t) * executor.max_workers / tasks


def bench_executors(url: str, count: int, workers: int, skip: list[str], log) -> dict[str, Any]:
    import torch

    from jobs.executors import open_executor
    from jobs.refit import RefitOptions, refit_experiment

    store = ParamStore.from_url(url, namespace="bench")
    names = _experiments(store, "exp", count, seed=1000)
    warm = _experiments(store, "warm", WARM_UP_EXPERIMENTS, seed=9000)
    log(f"executors: {count} experiments written")
    options = RefitOptions(activation_delay_s=0.0, force=True)
    torch.set_num_threads(1)
    refit_experiment(url, "bench", warm[0], now=T0 + 24 * HOUR, options=options)  # one-off costs: not timed
    store.clear_model_state(*names)
    t = time.perf_counter()
    sequential = [refit_experiment(url, "bench", n, now=T0 + 24 * HOUR, options=options) for n in names]
    sequential_s = time.perf_counter() - t
    log(f"executors: one by one {sequential_s:.1f} s")
    out: dict[str, Any] = {
        "experiments": count, "size": {**SIZE, "metrics": 3, "parameters": 6, "windows": 24},
        "one_by_one": {"wall_s": sequential_s, "refit_s": _distribution([r.duration_s for r in sequential]),
                       "statuses": dict(Counter(r.status.value for r in sequential))},
    }
    for kind in ("pool", "ray"):
        if kind in skip:
            continue
        store.clear_model_state(*names)
        with open_executor(kind, workers, threads_per_worker=1) as executor:
            warm_s, wall_s, records = _through(executor, url, names, warm, options)
            entry = {"workers": executor.max_workers, "threads_per_worker": executor.threads_per_worker,
                     "warm_up_s": warm_s, "wall_s": wall_s, "speedup_over_one_by_one": sequential_s / wall_s,
                     "refit_s": _distribution([r.duration_s for r in records]),
                     "statuses": dict(Counter(r.status.value for r in records))}
            if kind == "ray":
                entry["overhead_per_task_s"] = _ray_overhead_s(executor)
        out[kind] = entry
        log(f"executors: {kind} {wall_s:.1f} s ({entry['speedup_over_one_by_one']:.2f}x one by one), warm-up {warm_s:.1f} s")
    return out


def fit_iterations(store: ParamStore, name: str, warm_from: dict[str, Any] | None) -> dict[str, Any]:
    """Optimiser iterations and seconds of each metric's GP fit on the stored data, cold and from ``warm_from``.

    The same fit as a refit's (``bayesopt.gp.maximise_likelihood`` on the pooled data), with a callback that
    counts the optimiser's iterations (every attempt of its fallback loop together).
    """
    from bayesopt.gp import build_model, maximise_likelihood, warm_entry
    from bayesopt.pooling import pool
    from jobs.load import load_inputs

    inputs = load_inputs(store, name)
    pooled = pool(inputs.spec, inputs.table)
    out: dict[str, Any] = {}
    for metric, data in pooled.metrics.items():
        entry: dict[str, Any] = {"arms": len(data.arm_ids), "median_var": float(np.median(data.var[1:]))}
        starts = (("cold", None), ("warm", warm_entry(warm_from["state"], metric) if warm_from else None))
        for kind, warm in starts:
            steps: list[int] = []
            t = time.perf_counter()
            maximise_likelihood(build_model(data), metric, warm,
                                optimizer_kwargs={"callback": lambda _params, result, steps=steps: steps.append(result.step)})
            entry[kind] = {"iterations": len(steps), "fit_s": time.perf_counter() - t}
        out[metric] = entry
    return out


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    """Seconds, stage timings and rows of one untimed-role refit (from :func:`_refit`)."""
    return {"total_s": result["total_s"], "timings": result["timings"], "rows": result["rows"]}


def bench_history(url: str, days: int, repeats: int, log) -> dict[str, Any]:
    """Refits after 1 and ``days`` days of hourly windows, cold and warm-started as the hourly job does.

    The job passes the model state saved by the previous hour's refit as the warm start; so each day is refitted
    once an hour before its last window (``hour_before``, cold; on the last day it rolls up every window but the
    newest ``KEEP_WINDOWS``), that state is kept, the last window is added, and the refit is timed cold and then
    warm from the kept state (best of ``repeats`` each). The optimiser's iteration counts of both starts come
    with it (:func:`fit_iterations`). Last, a day more of windows and one refit that rolls that day up
    (``daily_roll_up``: the cost one refit a day pays).
    """
    store = ParamStore.from_url(url, namespace="bench")
    [warm] = _experiments(store, "history-warm-up", 1, seed=8)
    _refit(url, "bench", warm, T0 + 24 * HOUR, 1)  # the process's first fit pays one-off costs: not timed
    spec = bench_spec("history", candidates=SIZE["candidates"], draws=SIZE["draws"])
    history = History(store, spec, SIZE["arms"], seed=7)
    out: dict[str, Any] = {"size": {**SIZE, "metrics": 3, "parameters": 6}, "repeats": repeats}
    for label, day in (("day_1", 1), (f"day_{days}", days)):
        history.add_windows(day * 24 - 1 - history.windows)
        before = _refit(url, "bench", spec.name, T0 + history.windows * HOUR, 1)  # the refit an hour before
        hour_before = store.load_model_state(spec.name)
        history.add_windows(1)
        now = T0 + history.windows * HOUR
        result: dict[str, Any] = {"windows": history.windows, "hour_before": _brief(before)}
        for start, warm_from in (("cold", None), ("warm", hour_before)):
            result[start] = _refit(url, "bench", spec.name, now, repeats, warm_from=warm_from)
        result["rows"], result["peak_rss_mb"] = result["cold"]["rows"], _peak_rss_mb()
        result["rollup_bytes"] = len(store.recent_observations(spec.name).rollup or b"")
        result["fit_iterations"] = fit_iterations(store, spec.name, hour_before)
        out[label] = result
        log(f"history: {label} ({history.windows} windows, {result['rows']} rows) refit cold "
            f"{result['cold']['total_s']:.2f} s, warm {result['warm']['total_s']:.2f} s, "
            f"peak RSS {result['peak_rss_mb']:.0f} MB; iterations cold/warm "
            + ", ".join(f"{m} {e['cold']['iterations']}/{e['warm']['iterations']}"
                        for m, e in result["fit_iterations"].items()))
    history.add_windows(ROLL_EVERY)  # a day more: the next refit rolls that day up, as one a day does
    rolling = _refit(url, "bench", spec.name, T0 + history.windows * HOUR, 1, warm_from=store.load_model_state(spec.name))
    out["daily_roll_up"] = {"windows": history.windows, **_brief(rolling)}
    log(f"history: the refit that rolls up a day ({history.windows} windows) {rolling['total_s']:.2f} s, "
        f"load {rolling['timings']['load']:.2f} s")
    first, last = out["day_1"], out[f"day_{days}"]
    for start in ("cold", "warm"):
        out[f"{start}_last_over_first"] = last[start]["total_s"] / first[start]["total_s"]
    out["last_over_first"] = out["warm_last_over_first"]  # what the hourly job does
    out["last_within_1_5x_of_first"] = out["last_over_first"] <= 1.5
    out["rss_growth_mb"] = last["peak_rss_mb"] - first["peak_rss_mb"]
    return out


def _launch_many(store: ParamStore, count: int) -> list[str]:
    """``count`` copies of the example spec under their own names, launched; returns the names."""
    import yaml

    from param_store.launch import launch_experiment
    from simulations.bench_serving import SPEC

    base = yaml.safe_load(SPEC.read_text())
    names = [f"held-{i:04d}" for i in range(count)]
    for name in names:
        launch_experiment(store, {**base, "name": name}, now=time.time() - 60)
    return names


def _worker_rss_mb(master_pid: int) -> float:
    """Resident memory of the (one) gunicorn worker under ``master_pid``, from /proc (Linux)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    total = 0.0
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += float(line.split()[1]) / 1024.0
    return total


def bench_serving_many(held: int, duration: float, concurrency: int, log) -> dict[str, Any]:
    import subprocess
    import sys
    import tempfile

    from simulations.bench_serving import _free_port, _spawn, _wait_http, load

    out: dict[str, Any] = {"held": held, "duration_s": duration, "concurrency": concurrency, "workers": 1}
    with EmbeddedRedis() as redis_server, tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for label, count in (("one", 1), ("many", held)):
            namespace = f"serve-{label}"
            t = time.perf_counter()
            names = _launch_many(ParamStore(redis_server.client(), namespace=namespace), count)
            log(f"serving: {count} experiments launched in {time.perf_counter() - t:.1f} s")
            env = {**os.environ, "REDIS_URL": redis_server.url, "BAYESOPT_NAMESPACE": namespace, "BAYESOPT_HOME": tmp}
            port = _free_port()
            server = _spawn([sys.executable, "-m", "jobs.cli", "serve", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1"], env)
            try:
                _wait_http(port, "/v1/ready", server)
                paths = [f"/v1/experiments/{names[i % count]}/params?member_id=m{i}" for i in range(max(20_000, count))]
                load(port, paths[: 4 * count], duration=1.0, concurrency=concurrency)  # every name held before timing
                result = load(port, paths, duration=duration, concurrency=concurrency)
                latencies = result.pop("latencies")
                result.update(p50_ms=1e3 * float(np.percentile(latencies, 50)),
                              p99_ms=1e3 * float(np.percentile(latencies, 99)),
                              worker_rss_mb=_worker_rss_mb(server.pid), experiments=count)
            finally:
                server.terminate()
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()
            out[label] = result
            log(f"serving: {count} held: {result['requests_per_s']:.0f} req/s, p50 {result['p50_ms']:.2f} ms, "
                f"p99 {result['p99_ms']:.2f} ms, errors {result['errors']}, worker RSS {result['worker_rss_mb']:.0f} MB")
    out["p50_many_over_one"] = out["many"]["p50_ms"] / out["one"]["p50_ms"]
    out["rps_many_over_one"] = out["many"]["requests_per_s"] / out["one"]["requests_per_s"]
    out["memory_per_held_experiment_kb"] = 1024.0 * (out["many"]["worker_rss_mb"] - out["one"]["worker_rss_mb"]) / (held - 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bayesopt bench scale", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON output path (default %(default)s)")
    parser.add_argument("--experiments", type=int, default=200, help="experiments refitted by each executor")
    parser.add_argument("--days", type=int, default=30, help="days of hourly history for the last refit")
    parser.add_argument("--repeats", type=int, default=3, help="refits per history measurement (best is kept)")
    parser.add_argument("--workers", type=int, default=None, help="pool and Ray workers (default: CPU count)")
    parser.add_argument("--held", type=int, default=1000, help="experiments one serving worker holds")
    parser.add_argument("--serve-seconds", type=float, default=10.0, help="seconds of load on each serving worker")
    parser.add_argument("--concurrency", type=int, default=4, help="load generator processes")
    parser.add_argument("--skip", choices=("executors", "history", "pool", "ray", "serving"), action="append",
                        default=[], help="leave a part out")
    args = parser.parse_args(argv)

    import torch

    from jobs.executor import bounded_workers

    def log(msg: str) -> None:
        print(f"[bench scale] {msg}", flush=True)

    result: dict[str, Any] = {
        "benchmark": "scale", "started_at": time.time(), "load_average_at_start": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                    "platform": platform.platform()},
        "argv": argv or [],
    }
    with EmbeddedRedis() as server:
        if "history" not in args.skip:
            result["history"] = bench_history(server.url, args.days, args.repeats, log)
        if "serving" not in args.skip:
            result["serving"] = bench_serving_many(args.held, args.serve_seconds, args.concurrency, log)
        if "executors" not in args.skip:
            result["executors"] = bench_executors(server.url, args.experiments, bounded_workers(args.workers),
                                                  args.skip, log)
    write_result(result, args.out, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
