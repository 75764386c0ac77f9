"""Connecting to Redis: a given URL, or the embedded server when there is none."""

from __future__ import annotations

from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from param_store.embedded import EmbeddedRedis

#: Retries for connection and timeout errors only (never for a rejected command), with capped backoff.
RETRY = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3)
SOCKET_TIMEOUT_S = 10.0


def make_client(url: str) -> redis.Redis:
    """A redis-py client for ``url`` (``redis://``, ``rediss://`` or ``unix://``) with the retry policy."""
    return redis.Redis.from_url(
        url,
        retry=RETRY,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        socket_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
    )


def resolve_url(url: str | None, *, state_dir: str | Path, persist: bool = False) -> str:
    """``url`` if given, else the URL of a long-lived embedded server in ``state_dir`` (started if needed)."""
    if url:
        return url
    return EmbeddedRedis(state_dir, persist=persist, detach=True).ensure_running().url
