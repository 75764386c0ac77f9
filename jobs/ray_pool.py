"""Refits as Ray tasks: the process pool's task, on a local Ray instance started for the run or on a cluster.

Imported only when ``--executor ray`` is asked for (Ray is the optional ``ray`` extra). Each task is
:func:`jobs.refit.refit_experiment` with ``threads_per_worker`` torch threads, reserved as that many Ray CPUs,
so Ray never runs more refits on a node than it has cores. Tasks are not retried by Ray
(``max_retries=0``): a worker lost mid-refit comes back as a ``failed`` record, ``current`` is untouched (a
version becomes current in one Redis script), and the period is not marked done, so the next run refits it
once the lost run's lock expires.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from typing import Any

import ray

from jobs.errors import ExecutorUnavailableError
from jobs.executor import PRELOAD, RefitExecutor, bounded_workers, resolve_target, set_torch_threads
from jobs.runs import RunRecord
from jobs.settings import Settings


@ray.remote(max_retries=0)
def _refit_task(threads: int, target: str, namespace: str | None, name: str, kwargs: dict[str, Any]) -> RunRecord:
    set_torch_threads(threads)
    from jobs.refit import refit_experiment

    return refit_experiment(target, namespace, name, **kwargs)


@ray.remote(max_retries=0)
def _warm(threads: int, preload: tuple[str, ...]) -> int:
    import importlib

    set_torch_threads(threads)
    for module in preload:
        importlib.import_module(module)
    return os.getpid()


class RayRefitPool(RefitExecutor):
    """Refits on Ray: ``address`` names a running cluster (``ray://host:10001`` or ``host:6379``); None starts a
    local instance of this machine's cores for the life of the executor.

    ``max_workers`` refits run at once at most (default: the cluster's CPUs / ``threads_per_worker``).
    """

    kind = "ray"

    def __init__(self, max_workers: int | None = None, *, threads_per_worker: int | None = None,
                 address: str | None = None, preload: tuple[str, ...] = PRELOAD) -> None:
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                         runtime_env={"env_vars": _forwarded_env()})
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise ExecutorUnavailableError(f"--executor ray: could not start or reach {where}: {exc}") from exc
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if threads_per_worker is None:
            threads_per_worker = max(1, cpus // bounded_workers(max_workers)) if max_workers else 1
        self.threads_per_worker = min(threads_per_worker, cpus)
        self.max_workers = bounded_workers(max_workers or cpus // self.threads_per_worker)
        self.preload = preload
        self.address = address

    def submit(self, target: Settings | str, namespace: str | None, name: str, **kwargs: Any) -> Future[RunRecord]:
        target, namespace = resolve_target(target, namespace)
        task = _refit_task.options(num_cpus=self.threads_per_worker, name=f"refit {name}")
        return task.remote(self.threads_per_worker, target, namespace, name, kwargs).future()

    def warm_up(self) -> None:
        task = _warm.options(num_cpus=self.threads_per_worker)
        ray.get([task.remote(self.threads_per_worker, self.preload) for _ in range(self.max_workers)])

    def shutdown(self, *, wait: bool = True) -> None:
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()


def _forwarded_env() -> dict[str, str]:
    """Environment the workers need to import what the driver imports (a policy given as ``module:Name``)."""
    return {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
