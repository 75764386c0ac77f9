"""Refits of many experiments in parallel, in a bounded pool of worker processes.

Processes, not threads: a GP fit holds the GIL for long stretches and torch's own threads already use every
core, so each worker gets ``cpu_count // max_workers`` torch threads and the pool as a whole never
oversubscribes the machine. Workers are started with ``spawn`` (no forked copies of a parent's Redis
connections, locks or torch thread pools) and import the model code once, when they start.

The task is :func:`jobs.refit.refit_experiment` itself; :mod:`jobs.ray_pool` runs the same task on Ray.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from jobs.executor import PRELOAD, RefitExecutor, bounded_workers, resolve_target, set_torch_threads
from jobs.refit import refit_experiment
from jobs.runs import RunRecord
from jobs.settings import Settings


def _init_worker(threads: int, preload: tuple[str, ...]) -> None:
    set_torch_threads(threads)
    for module in preload:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # the task reports a missing policy itself, as a failed fit


def _ping() -> int:
    return os.getpid()


class RefitPool(RefitExecutor):
    """A ``ProcessPoolExecutor`` (spawn) of at most ``max_workers`` processes that runs refits.

    Thread-safe (the scheduler submits from several threads). A worker that dies (killed, out of memory)
    breaks a ``ProcessPoolExecutor``; the pool then starts a fresh executor for the next submission, and the
    refits caught in the broken one come back as ``failed`` records.
    """

    kind = "pool"

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
        futures = [self._get().submit(_ping) for _ in range(self.max_workers)]
        for f in futures:
            f.result()

    def submit(self, target: Settings | str, namespace: str | None, name: str, **kwargs: Any) -> Future[RunRecord]:
        target, namespace = resolve_target(target, namespace)
        try:
            return self._get().submit(refit_experiment, target, namespace, name, **kwargs)
        except BrokenProcessPool:
            return self._get().submit(refit_experiment, target, namespace, name, **kwargs)

    def shutdown(self, *, wait: bool = True) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=not wait)
            self._executor = None


def refit_many(
    target: Settings | str, namespace: str | None, names: Iterable[str], *, max_workers: int | None = None, **kwargs: Any
) -> list[RunRecord]:
    """Refit ``names`` in a fresh pool of at most ``max_workers`` processes; see :meth:`RefitExecutor.refit_all`."""
    names = list(names)
    with RefitPool(min(bounded_workers(max_workers), max(1, len(names)))) as pool:
        return pool.refit_all(target, namespace, names, **kwargs)
