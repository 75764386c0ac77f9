"""A Redis lock held for as long as its holder is alive: redis-py's ``Lock`` plus a heartbeat that renews it.

The ttl bounds how long a crashed holder (SIGKILL, lost machine) blocks the next one; the heartbeat lets a
healthy holder keep the lock longer than the ttl. Whoever acts on the lock asks :meth:`Lease.still_held` right
before the irreversible step, because a holder stalled past its ttl (a long GC or swap pause) may have lost it.

The lock is ``SET key token NX PX ttl``; release and renewal are compare-and-act scripts on the token, so only
the owner can release or renew it, and a late release after expiry deletes nothing.
"""

from __future__ import annotations

import threading

import redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from param_store.connection import store_boundary

#: Renewals per ttl: two heartbeats may be missed (a slow Redis round trip) before the lock lapses.
HEARTBEATS_PER_TTL = 3
#: Redis expiries have millisecond resolution.
MIN_TTL_S = 0.001


@store_boundary
class Lease:
    """A non-blocking lock on one key, renewed every ``ttl_s / HEARTBEATS_PER_TTL`` by a daemon thread.

    Build it with :meth:`param_store.ParamStore.lease`. A lease is acquired at most once; as a context manager
    it does not acquire (a taken lock is an ordinary outcome, not an error) but releases on exit::

        with store.lease("feed", "refit:1700000000", ttl_s=60) as lease:
            if not lease.acquire():
                return  # someone else holds it
            ...
            if lease.still_held():
                publish()

    Connection and timeout errors surface as :class:`~param_store.StoreUnavailableError`.
    """

    def __init__(self, client: redis.Redis, key: str, *, ttl_s: float) -> None:
        """Prepare the lease (no round trip).

        Args:
            client: the redis-py client of the store.
            key: the lock key.
            ttl_s: seconds the lock outlives a holder that stopped renewing it.

        Raises:
            ValueError: ``ttl_s`` is below :data:`MIN_TTL_S`.
        """
        if not ttl_s >= MIN_TTL_S:
            raise ValueError(f"The value of `ttl_s` should be at least {MIN_TTL_S} seconds, got {ttl_s!r}.")
        self.key = key
        self.ttl_s = ttl_s
        # thread_local=False: the heartbeat thread must see the token that the acquiring thread set.
        self._lock = Lock(client, key, timeout=ttl_s, thread_local=False)
        self._held = False
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock if it is free (never waits) and start the heartbeat.

        Returns:
            True if this lease now holds the lock, False if another holder has it.

        Raises:
            RuntimeError: this lease was acquired before (make a new one).
        """
        if self._thread is not None:
            raise RuntimeError(f"the lease on {self.key!r} was acquired already; make a new one")
        if not self._lock.acquire(blocking=False):
            return False
        self._held = True
        self._thread = threading.Thread(target=self._beat, name=f"lease:{self.key}", daemon=True)
        self._thread.start()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / HEARTBEATS_PER_TTL):
            try:
                self._lock.reacquire()
            except LockNotOwnedError:
                self._lost.set()
                return
            except redis.RedisError:
                continue  # transient; still_held() decides before anything irreversible

    def still_held(self) -> bool:
        """Whether this lease still owns the lock; if so, its expiry has just been reset to a full ttl."""
        if not self._held or self._lost.is_set():
            return False
        try:
            return self._lock.reacquire()
        except LockNotOwnedError:
            self._lost.set()
            return False

    def release(self) -> bool:
        """Stop the heartbeat and delete the lock if it is still ours; a no-op if it was never acquired.

        Returns:
            True if the lock was ours and is now deleted, False otherwise.
        """
        if not self._held:
            return False
        self._held = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._lock.release()
        except LockNotOwnedError:
            return False
        return True

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
