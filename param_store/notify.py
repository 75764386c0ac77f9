"""Announcements of newly activated versions: pub/sub first, polling as the fallback.

Redis pub/sub drops messages while a subscriber is disconnected, so the watcher also polls the ``current``
pointers of the experiments it is asked about every ``poll_interval_s`` (one MGET), and keeps polling while
the subscription is down. A callback may therefore hear of a version twice; it must be idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import redis

from param_store.errors import StoreError
from param_store.store import ParamStore

log = logging.getLogger(__name__)

#: Upper bound on how stale a cache can get when pub/sub is silent or down.
DEFAULT_POLL_INTERVAL_S = 5.0
RECONNECT_BACKOFF_S = 1.0
SUBSCRIBE_TIMEOUT_S = 10.0


class VersionWatcher:
    """A daemon thread calling ``on_version(experiment, version)`` when a ``current`` pointer moves."""

    def __init__(
        self,
        store: ParamStore,
        on_version: Callable[[str, int], None],
        names: Callable[[], Iterable[str]],
        *,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    ) -> None:
        self.store = store
        self.on_version = on_version
        self.names = names
        self.poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, int] = {}

    def start(self) -> VersionWatcher:
        self._thread = threading.Thread(target=self._run, name="version-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_interval_s + 2)

    def poll_once(self) -> None:
        """Read every watched experiment's pointer and report the ones that moved."""
        names = sorted(set(self.names()))
        if not names:
            return
        for name, version in self.store.current_versions(names).items():
            if version is not None:
                self._report(name, version)

    def _report(self, name: str, version: int) -> None:
        if version > self._seen.get(name, 0):
            self._seen[name] = version
            try:
                self.on_version(name, version)
            except Exception:  # a bad callback must not kill the watcher thread
                log.exception("version callback failed for %s v%d", name, version)

    def _run(self) -> None:
        down = False  # log the outage once, not once per reconnect attempt
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.store._redis.pubsub()  # param_store-internal: the store's own client and keys
                pubsub.psubscribe(self.store._keys.channel_pattern)
                self._await_subscription(pubsub)
                if down:
                    log.info("pub/sub subscribed again")
                    down = False
                self._listen(pubsub)
            except (redis.RedisError, StoreError) as exc:
                if not down:
                    log.warning("pub/sub unavailable (%s); polling every %.1f s until it is back", exc, self.poll_interval_s)
                    down = True
                self._poll_quietly()
                self._stop.wait(RECONNECT_BACKOFF_S)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except redis.RedisError:
                        pass

    def _await_subscription(self, pubsub: redis.client.PubSub) -> None:
        """Block until the server confirms the subscription, so the catch-up poll cannot miss a publish."""
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message and message.get("type") == "psubscribe":
                return
        raise redis.TimeoutError(f"no psubscribe confirmation within {SUBSCRIBE_TIMEOUT_S:.0f} s")

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        self.poll_once()  # catch up on whatever was published before we subscribed
        next_poll = time.monotonic() + self.poll_interval_s
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=min(1.0, self.poll_interval_s))
            if message and message.get("type") == "pmessage":
                name = self.store._keys.experiment_of_channel(message["channel"].decode())
                self._report(name, int(message["data"]))
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.poll_interval_s
                self.poll_once()

    def _poll_quietly(self) -> None:
        try:
            self.poll_once()
        except (redis.RedisError, StoreError):
            pass
