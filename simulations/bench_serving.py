"""Serving benchmark: ``bayesopt bench serving [--duration S] [--out PATH]`` (JSON on stdout and in ``--out``).

In one run, on loopback, with one load generator:

1. gunicorn serving the app (``bayesopt serve``) and gunicorn serving a bare Flask app that only returns "ok",
   with the same gunicorn options; a closed-loop generator (``--concurrency`` processes, one request at a
   time each) hits each in turn for ``--duration`` seconds, alternating for ``--rounds`` rounds, first with a
   new connection per request, then with one keep-alive connection per process (as rankers' HTTP pools do):
   requests per second, p50 and p99 latency. Goal: the single-member endpoint at >= 0.9 of the bare
   endpoint's requests per second, in both modes.
2. The batch endpoint with 1,000 member ids: server time from the ``Server-Timing`` header. Goal: < 10 ms.
3. Local in-process draws (``ServingClient.local``), one thread: goal >= 200,000 per second on one core. The
   coupled mode's worst case (a full block of ``horizon`` versions) is measured too.

The generator runs on the same machine as the servers, so the absolute rates include its own CPU use; the
ratio between the two endpoints is the number to compare across machines.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flask import Flask

SPEC = Path(__file__).parent / "specs" / "feed_example.yaml"
EXPERIMENT = "feed_example"
NAMESPACE = "bench"
GOALS = {"params_vs_bare_rps": 0.9, "batch_1000_server_ms_p50": 10.0, "local_draws_per_s": 200_000}
STARTUP_TIMEOUT_S = 60.0
#: Seconds each generator process runs before measuring (connection setup, worker warm-up).
WARMUP_S = 0.2


def bare_app() -> Flask:
    """The baseline: a Flask app with one route that returns "ok" and nothing else."""
    app = Flask("bare")

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    return app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bayesopt bench serving", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="write the JSON result here too")
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds of load per endpoint, split into --rounds alternating slices (default 10)")
    p.add_argument("--rounds", type=int, default=20,
                   help="alternating slices per endpoint; short slices pair up under drifting background load (default 20)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers of each server (default 2)")
    p.add_argument("--threads", type=int, default=4, help="threads per gthread worker of both servers (default 4)")
    p.add_argument("--concurrency", type=int, default=4, help="load generator processes (default 4)")
    p.add_argument("--batch-requests", type=int, default=200, help="batch requests of 1,000 ids (default 200)")
    p.add_argument("--local-draws", type=int, default=200_000, help="local draws to time (default 200,000)")
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. what else shared the machine)")
    p.add_argument("--bare-server", metavar="BIND", help=argparse.SUPPRESS)  # internal: run the bare app
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.bare_server:
        from jobs.commands.serve import gunicorn_options, run_gunicorn

        return run_gunicorn(bare_app, gunicorn_options(bind=args.bare_server, workers=args.workers, threads=args.threads))
    emit(run(args), args.out)
    return 0


def emit(result: dict[str, Any], out: Path | None) -> None:
    """Print a benchmark's JSON result, and write it to ``out`` too if given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def terminate(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Stop a server process: SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- orchestration ---------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    from param_store import EmbeddedRedis, ParamStore
    from param_store.launch import launch_experiment

    with EmbeddedRedis() as redis_server, tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        store = ParamStore(redis_server.client(), namespace=NAMESPACE)
        launch_experiment(store, SPEC, now=time.time() - 60)
        env = {**os.environ, "REDIS_URL": redis_server.url, "BAYESOPT_NAMESPACE": NAMESPACE, "BAYESOPT_HOME": tmp}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        common = ["--workers", str(args.workers), "--threads", str(args.threads)]
        serving_port, bare_port = _free_port(), _free_port()
        servers = [
            _spawn([sys.executable, "-m", "jobs.cli", "serve", "--bind", f"127.0.0.1:{serving_port}", *common], env),
            _spawn([sys.executable, "-m", "simulations.bench_serving", "--bare-server", f"127.0.0.1:{bare_port}", *common], env),
        ]
        try:
            _wait_http(serving_port, "/v1/ready", servers[0])
            _wait_http(bare_port, "/ok", servers[1])
            ids = [f"member-{i}" for i in range(100_000)]
            param_paths = [f"/v1/experiments/{EXPERIMENT}/params?member_id={m}" for m in ids[:20_000]]
            targets = {  # name: (port, paths, keep-alive), new connections first, then keep-alive clients
                "bare": (bare_port, ["/ok"], False), "params": (serving_port, param_paths, False),
                "bare_keepalive": (bare_port, ["/ok"], True), "params_keepalive": (serving_port, param_paths, True),
            }
            masters = {"bare": servers[1], "params": servers[0], "bare_keepalive": servers[1], "params_keepalive": servers[0]}
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
            for pair in (("bare", "params"), ("bare_keepalive", "params_keepalive")):
                for i in range(args.rounds):
                    for name in pair if i % 2 == 0 else reversed(pair):  # neither always goes first
                        port, paths, keepalive = targets[name]
                        cpu_before = _children_cpu_s(masters[name].pid)
                        result = load(port, paths, duration=args.duration / args.rounds, concurrency=args.concurrency,
                                      keepalive=keepalive)
                        result["worker_cpu_s"] = _children_cpu_s(masters[name].pid) - cpu_before
                        rounds[name].append(result)
            endpoints = {name: _summarise(rs) for name, rs in rounds.items()}
            paired = [p["requests_per_s"] / b["requests_per_s"] for p, b in zip(rounds["params"], rounds["bare"], strict=True)]
            paired_ka = [p["requests_per_s"] / b["requests_per_s"]
                         for p, b in zip(rounds["params_keepalive"], rounds["bare_keepalive"], strict=True)]
            batch = _batch(serving_port, ids, args.batch_requests)
            local = _local(serving_port, ids, args.local_draws)
        finally:
            for proc in servers:
                terminate(proc)
    ratio = endpoints["params"]["requests_per_s"] / endpoints["bare"]["requests_per_s"]
    ratio_ka = endpoints["params_keepalive"]["requests_per_s"] / endpoints["bare_keepalive"]["requests_per_s"]
    cpu_ratio = endpoints["bare"]["worker_cpu_us_per_request"] / endpoints["params"]["worker_cpu_us_per_request"]
    return {
        "benchmark": "serving",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2), "note": args.note},
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "bare_server", "note")},
        "endpoints": endpoints,
        "params_vs_bare_rps": round(ratio, 3),
        "params_vs_bare_rps_paired_median": round(statistics.median(paired), 3),
        "params_vs_bare_worker_cpu": round(cpu_ratio, 3),
        "params_vs_bare_rps_keepalive": round(ratio_ka, 3),
        "params_vs_bare_rps_keepalive_paired_median": round(statistics.median(paired_ka), 3),
        "batch_1000": batch,
        "local": local,
        "goals": {
            "params_vs_bare_rps": {"goal": f">= {GOALS['params_vs_bare_rps']}", "met": ratio >= GOALS["params_vs_bare_rps"]},
            "params_vs_bare_rps_keepalive": {"goal": f">= {GOALS['params_vs_bare_rps']}",
                                             "met": ratio_ka >= GOALS["params_vs_bare_rps"]},
            "batch_1000_server_ms_p50": {"goal": f"< {GOALS['batch_1000_server_ms_p50']}",
                                         "met": batch["server_ms_p50"] < GOALS["batch_1000_server_ms_p50"]},
            "local_draws_per_s": {"goal": f">= {GOALS['local_draws_per_s']}",
                                  "met": local["epoch_draws_per_s"] >= GOALS["local_draws_per_s"]},
        },
    }


def _spawn(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(port: int, path: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            if _get(port, path)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} was not ready after {STARTUP_TIMEOUT_S} s")


# -- the load generator -------------------------------------------------------------------------------------
def _get(port: int, path: str) -> tuple[int, bytes]:
    """One HTTP/1.1 GET on a fresh connection; returns the status and the raw response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    return int(raw[9:12]), raw


def _worker(port: int, paths: list[str], duration: float, seed: int, out: Any, keepalive: bool) -> None:
    rng = random.Random(seed)
    send = _keepalive_sender(port) if keepalive else _fresh_connection_sender(port)
    latencies, errors = [], 0
    warm_until = time.perf_counter() + WARMUP_S
    stop = warm_until + duration
    while True:
        now = time.perf_counter()
        if now >= stop:
            break
        ok = send(paths[rng.randrange(len(paths))])
        done = time.perf_counter()
        if now >= warm_until:
            if ok:
                latencies.append(done - now)
            else:
                errors += 1
    out.put((latencies, errors))


def _fresh_connection_sender(port: int) -> Any:
    """``send(path) -> ok`` over a new connection per request (``Connection: close``)."""
    def send(path: str) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                first = s.recv(65536)
                while s.recv(65536):
                    pass
            return first[9:12] == b"200"
        except OSError:
            return False

    return send


def _keepalive_sender(port: int) -> Any:
    """``send(path) -> ok`` reusing one connection, as a ranker's HTTP client pool does (reconnects if closed)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def send(path: str) -> bool:
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            conn.close()
            return False

    return send


def load(port: int, paths: list[str], *, duration: float, concurrency: int, keepalive: bool = False) -> dict[str, Any]:
    """Closed-loop load from ``concurrency`` processes for ``duration`` seconds after a warm-up."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(port, paths, duration, i, out, keepalive)) for i in range(concurrency)]
    for p in procs:
        p.start()
    results = [out.get(timeout=duration + 60) for _ in procs]
    for p in procs:
        p.join()
    latencies = sorted(x for lat, _ in results for x in lat)
    return {"requests": len(latencies), "errors": sum(e for _, e in results), "requests_per_s": len(latencies) / duration,
            "seconds": duration, "latencies": latencies}


def _children_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by the live children of ``pid`` (the gunicorn workers); Linux only."""
    total = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for child in children:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")
    return total


def _summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(x for r in rounds for x in r["latencies"])
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    return {
        "requests_per_s": round(requests / seconds, 1),
        "requests_per_s_rounds": [round(r["requests_per_s"], 1) for r in rounds],
        "worker_cpu_us_per_request": round(1e6 * sum(r["worker_cpu_s"] for r in rounds) / max(1, requests), 1),
        "latency_ms_p50": round(1000 * _quantile(latencies, 0.5), 3),
        "latency_ms_p99": round(1000 * _quantile(latencies, 0.99), 3),
        "requests": requests,
        "errors": sum(r["errors"] for r in rounds),
    }


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# -- batch and local --------------------------------------------------------------------------------------------
def _batch(port: int, ids: list[str], n_requests: int) -> dict[str, Any]:
    import requests

    session = requests.Session()
    url = f"http://127.0.0.1:{port}/v1/experiments/{EXPERIMENT}/params/batch"
    server_ms, client_ms = [], []
    for i in range(n_requests + 10):
        body = {"member_ids": ids[(i * 1000) % len(ids):][:1000]}
        start = time.perf_counter()
        response = session.post(url, json=body, timeout=10)
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        if i >= 10:  # warm-up
            server_ms.append(float(response.headers["Server-Timing"].split("dur=")[1]))
            client_ms.append(1000 * elapsed)
    server_ms.sort()
    client_ms.sort()
    return {"members": 1000, "requests": n_requests, "server_ms_p50": round(_quantile(server_ms, 0.5), 3),
            "server_ms_p99": round(_quantile(server_ms, 0.99), 3), "client_ms_p50": round(_quantile(client_ms, 0.5), 3)}


def _local(port: int, ids: list[str], draws: int) -> dict[str, Any]:
    from serving import ServingClient

    assigner = ServingClient(f"http://127.0.0.1:{port}").local(EXPERIMENT, refresh_s=60)
    snapshot = assigner.snapshot()
    at = time.time()
    members = [ids[i % len(ids)] for i in range(draws)]
    start = time.perf_counter()
    for m in members:
        assigner.assign(m, at=at)
    single = draws / (time.perf_counter() - start)
    start = time.perf_counter()
    snapshot.assign_many(members, at)
    many = draws / (time.perf_counter() - start)
    coupled = _coupled_snapshot(snapshot)
    n = max(1, draws // 10)
    start = time.perf_counter()
    coupled.assign_many(members[:n], at)
    coupled_rate = n / (time.perf_counter() - start)
    return {
        "epoch_draws_per_s": round(single),
        "epoch_draws_per_s_batch": round(many),
        "coupled_worst_case_draws_per_s": round(coupled_rate),
        "coupled_chain_versions": coupled.horizon,
        "note": "one thread of one process; coupled: the last version of a full block (horizon steps)",
    }


def _coupled_snapshot(snapshot: Any) -> Any:
    """A coupled-mode snapshot whose in-force version sits at the end of a full block (the slowest case)."""
    from bayesopt.distribution import normalize_weights
    from serving import ServingSnapshot
    from serving.assignment import DEFAULT_COUPLING_HORIZON

    rng = random.Random(0)
    base = snapshot.distributions[-1][1]
    versions = []
    for i in range(DEFAULT_COUPLING_HORIZON):
        weights = normalize_weights([a.weight * rng.uniform(0.5, 1.5) for a in base.arms])
        control = base.control_share
        arms = [a.arm_id for a in base.arms]
        w = dict(zip(arms, weights, strict=True))
        if w[base.control_arm_id] < control:  # keep the control floor the record demands
            rest = 1 - control
            others = sum(v for k, v in w.items() if k != base.control_arm_id)
            w = {k: (control if k == base.control_arm_id else v * rest / others) for k, v in w.items()}
        dist = base.replace(version=i + 1, arms=tuple(a.__class__(a.arm_id, a.values, w[a.arm_id]) for a in base.arms),
                            valid_from=base.valid_from - (DEFAULT_COUPLING_HORIZON - i))
        versions.append((i, dist))
    return ServingSnapshot(experiment=snapshot.experiment, state="running", experiment_share=snapshot.experiment_share,
                           stickiness_seconds=snapshot.stickiness_seconds, versions=versions, mode="coupled")


if __name__ == "__main__":
    sys.exit(main())
