"""Connecting to Redis: a given URL, or the embedded server when there is none; and the store's error boundary."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from param_store.embedded import EmbeddedRedis
from param_store.errors import StoreUnavailableError

log = logging.getLogger(__name__)

RETRY_BACKOFF_BASE_S = 0.05
RETRY_BACKOFF_CAP_S = 1.0
RETRIES = 3
#: Retries for connection and timeout errors only (never for a rejected command), with capped backoff.
RETRY = Retry(ExponentialBackoff(cap=RETRY_BACKOFF_CAP_S, base=RETRY_BACKOFF_BASE_S), retries=RETRIES)
#: Read timeout of the jobs' and CLI's clients (a refit's large reads); serving passes its own, much shorter.
SOCKET_TIMEOUT_S = 10.0
#: How long a connection attempt may take before it counts as a lost server.
CONNECT_TIMEOUT_S = 2.0
#: An idle pooled connection is pinged before reuse after this long, so a dropped one is replaced, not failed.
HEALTH_CHECK_INTERVAL_S = 30

#: The redis-py errors that mean "the server is gone or too slow", translated to :class:`StoreUnavailableError`.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError)
#: Dunder methods that talk to Redis and so sit on the boundary too (others, like ``__init__``, do not).
BOUNDARY_DUNDERS = frozenset({"__enter__", "__exit__"})

C = TypeVar("C", bound=type)


#: URL schemes that select Redis Cluster mode; the rest of the URL is a seed node (password, TLS as usual).
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def make_client(url: str, *, socket_timeout_s: float = SOCKET_TIMEOUT_S, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                retries: int = RETRIES) -> redis.Redis | RedisCluster:
    """A redis-py client for ``url`` with the retry policy.

    ``redis://``, ``rediss://`` and ``unix://`` give a single-server client; ``redis+cluster://host:port`` (or
    ``rediss+cluster://``) a :class:`~redis.cluster.RedisCluster` that discovers the other nodes from that one.
    A password (``redis://:secret@host``) and TLS (``rediss://``, with ``ssl_cert_reqs`` and friends as query
    parameters) come from the URL; print it only through :func:`mask_url`.

    Args:
        url: the server (or a seed node of the cluster).
        socket_timeout_s: the longest wait for one reply.
        connect_timeout_s: the longest wait for a connection.
        retries: further attempts after a connection or timeout error (with capped exponential backoff).
    """
    retry = RETRY if retries == RETRIES else Retry(ExponentialBackoff(cap=RETRY_BACKOFF_CAP_S, base=RETRY_BACKOFF_BASE_S), retries=retries)
    scheme, sep, rest = url.partition("://")
    if sep and scheme in CLUSTER_SCHEMES:
        return RedisCluster.from_url(
            f"{CLUSTER_SCHEMES[scheme]}://{rest}",
            retry=retry,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
        )
    return redis.Redis.from_url(
        url,
        retry=retry,
        retry_on_error=list(UNAVAILABLE_ERRORS),
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
    )


def is_cluster(client: redis.Redis | RedisCluster) -> bool:
    """Whether ``client`` talks to a Redis Cluster (multi-key reads across experiments must then be split)."""
    return isinstance(client, RedisCluster)


def mask_url(url: str | None) -> str | None:
    """``url`` with any password replaced by ``***`` (user names, hosts and query parameters are kept)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def resolve_url(url: str | None, *, state_dir: str | Path, persist: bool = True) -> str:
    """``url`` if given, else the URL of a long-lived embedded server in ``state_dir`` (started if needed).

    A server started here that found no stored data says so in the log (an empty store is then expected, not
    a loss); one without persistence warns that its data goes when it stops.
    """
    if url:
        return url
    server = EmbeddedRedis(state_dir, persist=persist, detach=True)
    if not server.is_running():
        server.start()
        log.warning("started embedded redis in %s: %s", server.state_dir, server.describe_start())
    return server.url


def _translating(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except UNAVAILABLE_ERRORS as exc:
            raise StoreUnavailableError(f"the Redis store is unavailable ({type(exc).__name__}: {exc})") from exc

    return wrapper


def store_boundary(cls: C) -> C:
    """Class decorator: the public methods of ``cls`` raise :class:`StoreUnavailableError` for a lost server.

    Every public function defined on the class (and ``__enter__``/``__exit__``) is wrapped once, so no method
    needs its own ``try``. A nested call translates once: the outer wrapper lets a ``StoreUnavailableError``
    through. Properties and class methods are left alone (they must not talk to Redis).

    Args:
        cls: the class whose methods form the boundary.

    Returns:
        ``cls`` itself, modified in place.
    """
    for name, member in list(vars(cls).items()):
        if inspect.isfunction(member) and (not name.startswith("_") or name in BOUNDARY_DUNDERS):
            setattr(cls, name, _translating(member))
    return cls
