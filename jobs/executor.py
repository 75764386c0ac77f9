"""What every refit executor shares: submit one refit, refit many with progress, turn a lost task into a record.

An executor runs :func:`jobs.refit.refit_experiment` somewhere (a local process pool, Ray tasks); it decides
nothing about exactly-once. The period lock and the done marker live in Redis, so a task that is retried,
duplicated or lost can never publish twice or leave ``current`` half-written.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, as_completed
from typing import Any

from jobs.runs import Reason, RunRecord, RunStatus
from jobs.settings import Settings

#: Upper bound on workers whatever is asked: each holds torch and a model in memory (a few hundred MB).
MAX_WORKERS_CAP = 32
#: Imported by each worker when it starts, so the first refit does not pay for importing torch and botorch.
PRELOAD = ("jobs.refit", "bayesopt.policy")


def bounded_workers(requested: int | None = None) -> int:
    """``requested`` (default: the CPU count) clipped to ``[1, MAX_WORKERS_CAP]``."""
    return max(1, min(requested or os.cpu_count() or 1, MAX_WORKERS_CAP))


def set_torch_threads(threads: int) -> None:
    """Bound this process's torch (and BLAS) threads, so parallel refits never oversubscribe the cores."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


class RefitExecutor(abc.ABC):
    """Runs refits in parallel; ``max_workers`` of them at a time. Thread-safe; a context manager."""

    #: The name ``--executor`` takes.
    kind: str = ""
    max_workers: int
    threads_per_worker: int

    @abc.abstractmethod
    def submit(self, target: Settings | str, namespace: str | None, name: str, **kwargs: Any) -> Future[RunRecord]:
        """Schedule ``refit_experiment(target, namespace, name, **kwargs)``; kwargs must be picklable."""

    @abc.abstractmethod
    def warm_up(self) -> None:
        """Start the workers now rather than at the first refit (spawning and importing torch takes seconds)."""

    @abc.abstractmethod
    def shutdown(self, *, wait: bool = True) -> None:
        """Release the workers; ``wait=False`` cancels refits not yet started."""

    def refit_all(
        self, target: Settings | str, namespace: str | None, names: Iterable[str], *,
        on_record: Callable[[RunRecord, int, int], None] | None = None, **kwargs: Any,
    ) -> list[RunRecord]:
        """Refit every experiment in ``names`` in parallel; one record per name, in order, failures included.

        ``on_record(record, done, total)`` is called as each refit finishes (in completion order): progress.
        """
        target, namespace = resolve_target(target, namespace)
        started = time.time()
        futures = {name: self.submit(target, namespace, name, **kwargs) for name in names}
        if on_record is not None:
            names_of = {future: name for name, future in futures.items()}
            for done, future in enumerate(as_completed(names_of), start=1):
                on_record(result_or_failure(names_of[future], future, started), done, len(futures))
        return [result_or_failure(name, f, started) for name, f in futures.items()]

    def __enter__(self) -> RefitExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def result_or_failure(name: str, future: Future[RunRecord], started: float, timeout: float | None = None) -> RunRecord:
    """The future's record, or a ``failed`` one if the worker died or the task could not run."""
    try:
        return future.result(timeout=timeout)
    except Exception as exc:  # a broken pool, a lost Ray worker, a pickling error, a timeout
        return RunRecord(
            experiment=name, status=RunStatus.FAILED, reason=Reason.ERROR, started_at=started, ended_at=time.time(),
            message=f"the refit task did not complete: {type(exc).__name__}: {exc}",
        )


def resolve_target(target: Settings | str, namespace: str | None) -> tuple[str, str | None]:
    """Resolve settings to a URL once, in the parent, so workers never start an embedded server themselves."""
    if isinstance(target, Settings):
        return target.store_url(), namespace or target.namespace
    return target, namespace
