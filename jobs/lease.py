"""A Redis lock held for as long as its holder is alive: a token lock plus a heartbeat that extends it.

The ttl bounds how long a crashed holder (SIGKILL, lost machine) blocks the next run; the heartbeat lets a
healthy run last longer than the ttl. Whoever acts on the lock asks :meth:`Lease.still_held` right before the
irreversible step, because a holder stalled past its ttl (a long GC or swap pause) may have lost it.
"""

from __future__ import annotations

import threading

import redis

from param_store import TokenLock

#: Extensions per ttl: two heartbeats may be missed (a slow Redis round trip) before the lock lapses.
HEARTBEATS_PER_TTL = 3


class Lease:
    """A :class:`~param_store.TokenLock` on ``key`` with a daemon thread extending it every ``ttl_s / 3``."""

    def __init__(self, client: redis.Redis, key: str, *, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError(f"The value of `ttl_s` should be a positive number of seconds, got {ttl_s!r}.")
        self.ttl_s = ttl_s
        self.lock = TokenLock(client, key, ttl_ms=max(1, int(ttl_s * 1000)))
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock if it is free (never waits) and start the heartbeat."""
        if not self.lock.acquire():
            return False
        self._thread = threading.Thread(target=self._beat, name=f"lease:{self.lock.key}", daemon=True)
        self._thread.start()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / HEARTBEATS_PER_TTL):
            try:
                if not self.lock.extend():
                    self._lost.set()
                    return
            except redis.RedisError:
                continue  # transient; still_held() decides before anything irreversible

    def still_held(self) -> bool:
        """True if this holder still owns the lock (and it has just been extended by a full ttl)."""
        return not self._lost.is_set() and self.lock.extend()

    def release(self) -> None:
        """Stop the heartbeat and delete the lock if still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.lock.release()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
