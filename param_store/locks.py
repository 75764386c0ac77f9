"""A Redis lock with a random owner token and an expiry; only its owner can release or extend it."""

from __future__ import annotations

import secrets

import redis

from param_store import scripts


class TokenLock:
    """``SET key token NX PX ttl``; release and extend are compare-and-act scripts keyed on the token.

    If the holder dies, the lock frees itself after ``ttl_ms``; a holder that outlives its ttl has lost the
    lock, and its late release deletes nothing.
    """

    def __init__(self, client: redis.Redis, key: str, *, ttl_ms: int) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = secrets.token_hex(16)
        self._release = client.register_script(scripts.RELEASE_LOCK)
        self._extend = client.register_script(scripts.EXTEND_LOCK)

    def acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def extend(self) -> bool:
        """Reset the expiry to ``ttl_ms``; False if the lock was lost."""
        return bool(self._extend(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> bool:
        """Delete the lock if this token still owns it."""
        return bool(self._release(keys=[self.key], args=[self.token]))

    def owned(self) -> bool:
        raw = self.client.get(self.key)
        return raw is not None and raw.decode() == self.token

    def __enter__(self) -> TokenLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
