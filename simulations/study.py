"""Many closed-loop runs (policies x seeds) in a process pool, each on its own embedded Redis and server.

Every finished run is written to ``<out>/runs/<policy>-seed<seed>.json`` at once, and a run whose file is
already there is loaded instead of run again, so an interrupted study resumes where it stopped. The table,
plot and JSON of :func:`simulations.report.write_study_report` are written at the end.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from simulations.loop import POLICY_NAMES, LoopConfig

#: Rough relative cost of an hour per policy, so the slow runs start first and the pool ends evenly.
COST = {"ax": 4.0, "gp": 3.0, "utility": 3.0, "arm_ts": 0.3, "uniform": 0.2, "ab_grid": 0.2}


def run_path(out_dir: Path, policy: str, seed: int) -> Path:
    return out_dir / "runs" / f"{policy}-seed{seed}.json"


def _worker_init(threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _run_one(config: LoopConfig, path: str, ticks: Any) -> str:
    """Run one loop in a pool worker, write its JSON to ``path``; ``ticks`` hears of every finished hour."""
    from simulations.loop import run_closed_loop

    def tick(record: Any) -> None:
        if ticks is not None:
            ticks.put((config.policy, config.seed, record.step))

    result = run_closed_loop(config, progress=tick)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(_jsonable(result.to_dict())))
    tmp.replace(target)
    return path


def _jsonable(value: Any) -> Any:
    from simulations.report import _plain

    return _plain(value)


def run_study(
    base: LoopConfig,
    policies: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    workers: int = 1,
    threads_per_worker: int | None = None,
    command: str = "",
    progress: bool = True,
    on_run: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Path]:
    """Run ``policies x seeds`` closed loops like ``base`` and write the study report into ``out_dir``."""
    from simulations.report import write_study_report

    unknown = [p for p in policies if p not in POLICY_NAMES]
    if unknown:
        raise ValueError(f"unknown policies {unknown} (known: {', '.join(POLICY_NAMES)})")
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    configs = [replace(base, policy=p, seed=int(s)) for p in policies for s in seeds]
    todo = [c for c in configs if not run_path(out, c.policy, c.seed).exists()]
    todo.sort(key=lambda c: -COST.get(c.policy, 1.0))
    (out / "study_config.json").write_text(json.dumps({
        "command": command, "base": _jsonable(base.to_dict()), "policies": list(policies), "seeds": list(seeds),
        "workers": workers, "threads_per_worker": threads_per_worker,
    }, indent=2))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(configs) * base.hours, initial=(len(configs) - len(todo)) * base.hours, unit="h",
                   desc=f"{len(configs)} runs", file=sys.stderr, dynamic_ncols=True)
    started = time.perf_counter()
    if todo:
        threads = threads_per_worker or max(1, (os.cpu_count() or 1) // max(1, workers))
        ctx = mp.get_context("spawn")  # torch and fork do not mix
        with ctx.Manager() as manager:
            ticks = manager.Queue() if bar is not None else None
            with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx, initializer=_worker_init,
                                     initargs=(threads,)) as pool:
                pending: dict[Future[str], LoopConfig] = {
                    pool.submit(_run_one, c, str(run_path(out, c.policy, c.seed)), ticks): c for c in todo
                }
                failures: list[str] = []
                while pending:
                    done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(ticks, bar)
                    for future in done:
                        config = pending.pop(future)
                        try:
                            path = future.result()
                        except Exception as exc:  # one failing run must not lose the others
                            failures.append(f"{config.policy} seed {config.seed}: {type(exc).__name__}: {exc}")
                            if bar is not None:
                                bar.write(f"run {config.policy} seed {config.seed} failed: {exc}")
                            continue
                        if on_run is not None:
                            on_run(json.loads(Path(path).read_text()))
                _drain(ticks, bar)
        if failures:
            (out / "failures.txt").write_text("\n".join(failures) + "\n")
    if bar is not None:
        bar.close()
    docs = [json.loads(run_path(out, c.policy, c.seed).read_text()) for c in configs
            if run_path(out, c.policy, c.seed).exists()]
    if not docs:
        raise RuntimeError(f"no run of the study finished; see {out / 'failures.txt'}")
    paths = write_study_report(docs, out, command=command)
    paths["wall_s"] = time.perf_counter() - started  # type: ignore[assignment]
    return paths


def _drain(ticks: Any, bar: Any) -> None:
    if ticks is None or bar is None:
        return
    n = 0
    while True:
        try:
            ticks.get_nowait()
        except queue.Empty:
            break
        except (EOFError, OSError):  # the manager went away at shutdown
            break
        n += 1
    if n:
        bar.update(n)
