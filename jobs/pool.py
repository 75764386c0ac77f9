"""Refits of many experiments in parallel, in a bounded pool of worker processes.

Processes, not threads: a GP fit holds the GIL for long stretches and torch's own threads already use every
core, so each worker gets ``cpu_count // max_workers`` torch threads and the pool as a whole never
oversubscribes the machine. Workers are started with ``spawn`` (no forked copies of a parent's Redis
connections, locks or torch thread pools) and import the model code once, when they start.

The task is :func:`jobs.refit.refit_experiment` itself; see ``docs/jobs.md`` for running it on Ray or Dask.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import time
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from jobs.refit import refit_experiment
from jobs.runs import Reason, RunRecord, RunStatus
from jobs.settings import Settings

#: Upper bound on workers whatever is asked: each holds torch and a model in memory (a few hundred MB).
MAX_WORKERS_CAP = 32
#: Imported by each worker when it starts, so the first refit does not pay for importing torch and botorch.
PRELOAD = ("jobs.refit", "bayesopt.policy")


def bounded_workers(requested: int | None = None) -> int:
    """``requested`` (default: the CPU count) clipped to ``[1, MAX_WORKERS_CAP]``."""
    return max(1, min(requested or os.cpu_count() or 1, MAX_WORKERS_CAP))


def _init_worker(threads: int, preload: tuple[str, ...]) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    for module in preload:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # the task reports a missing policy itself, as a failed fit


def _ping() -> int:
    return os.getpid()


class RefitPool:
    """A ``ProcessPoolExecutor`` (spawn) of at most ``max_workers`` processes that runs refits.

    Thread-safe (the scheduler submits from several threads). A worker that dies (killed, out of memory)
    breaks a ``ProcessPoolExecutor``; the pool then starts a fresh executor for the next submission, and the
    refits caught in the broken one come back as ``failed`` records.
    """

    def __init__(self, max_workers: int | None = None, *, threads_per_worker: int | None = None, preload: tuple[str, ...] = PRELOAD) -> None:
        self.max_workers = bounded_workers(max_workers)
        self.threads_per_worker = threads_per_worker or max(1, (os.cpu_count() or 1) // self.max_workers)
        self.preload = preload
        self._executor: ProcessPoolExecutor | None = None

    def _get(self) -> ProcessPoolExecutor:
        if self._executor is None or getattr(self._executor, "_broken", False):
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = ProcessPoolExecutor(
                max_workers=self.max_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.threads_per_worker, self.preload),
            )
        return self._executor

    def warm_up(self) -> None:
        """Start every worker now (spawning and importing torch takes seconds) instead of at the first refit."""
        futures = [self._get().submit(_ping) for _ in range(self.max_workers)]
        for f in futures:
            f.result()

    def submit(self, target: Settings | str, namespace: str | None, name: str, **kwargs: Any) -> Future[RunRecord]:
        """Schedule ``refit_experiment(target, namespace, name, **kwargs)``; kwargs must be picklable."""
        target, namespace = _resolve(target, namespace)
        try:
            return self._get().submit(refit_experiment, target, namespace, name, **kwargs)
        except BrokenProcessPool:
            return self._get().submit(refit_experiment, target, namespace, name, **kwargs)

    def refit_all(self, target: Settings | str, namespace: str | None, names: Iterable[str], **kwargs: Any) -> list[RunRecord]:
        """Refit every experiment in ``names`` in parallel; one record per name, in order, failures included."""
        target, namespace = _resolve(target, namespace)
        started = time.time()
        futures = {name: self.submit(target, namespace, name, **kwargs) for name in names}
        return [result_or_failure(name, f, started) for name, f in futures.items()]

    def shutdown(self, *, wait: bool = True) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=not wait)
            self._executor = None

    def __enter__(self) -> RefitPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def result_or_failure(name: str, future: Future[RunRecord], started: float, timeout: float | None = None) -> RunRecord:
    """The future's record, or a ``failed`` one if the worker died or the task could not run."""
    try:
        return future.result(timeout=timeout)
    except Exception as exc:  # BrokenProcessPool, a pickling error, a timeout
        return RunRecord(
            experiment=name, status=RunStatus.FAILED, reason=Reason.ERROR, started_at=started, ended_at=time.time(),
            message=f"the refit task did not complete: {type(exc).__name__}: {exc}",
        )


def refit_many(
    target: Settings | str, namespace: str | None, names: Iterable[str], *, max_workers: int | None = None, **kwargs: Any
) -> list[RunRecord]:
    """Refit ``names`` in a fresh pool of at most ``max_workers`` processes; see :meth:`RefitPool.refit_all`."""
    names = list(names)
    with RefitPool(min(bounded_workers(max_workers), max(1, len(names)))) as pool:
        return pool.refit_all(target, namespace, names, **kwargs)


def _resolve(target: Settings | str, namespace: str | None) -> tuple[str, str | None]:
    """Resolve settings to a URL once, in the parent, so workers never start an embedded server themselves."""
    if isinstance(target, Settings):
        return target.store_url(), namespace or target.namespace
    return target, namespace
