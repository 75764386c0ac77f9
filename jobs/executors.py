"""Pick the refit executor by name: the local process pool (default) or Ray (the optional ``ray`` extra)."""

from __future__ import annotations

from jobs.errors import ExecutorChoiceError
from jobs.executor import RefitExecutor

#: The choices of ``--executor``.
EXECUTOR_KINDS = ("pool", "ray")


def open_executor(kind: str = "pool", max_workers: int | None = None, *, threads_per_worker: int | None = None,
                  address: str | None = None) -> RefitExecutor:
    """A started executor of ``kind``; Ray is imported only here, and only for ``kind="ray"``."""
    if kind == "pool":
        if address is not None:
            raise ExecutorChoiceError("--address: only --executor ray takes a cluster address")
        from jobs.pool import RefitPool

        return RefitPool(max_workers, threads_per_worker=threads_per_worker)
    if kind == "ray":
        try:
            from jobs.ray_pool import RayRefitPool
        except ImportError as exc:
            raise ExecutorChoiceError(
                f"--executor ray: Ray is not installed ({exc}); install it with pip install 'bayesopt-service[ray]'"
            ) from exc
        return RayRefitPool(max_workers, threads_per_worker=threads_per_worker, address=address)
    raise ExecutorChoiceError(f"--executor: unknown executor {kind!r}; choose one of {', '.join(EXECUTOR_KINDS)}")
