"""The per-worker distribution cache: requests read snapshots from memory, never from Redis.

Each worker holds one immutable :class:`~serving.assignment.ServingSnapshot` per experiment and swaps in a new
one when something changes:

- a version is activated: ``param_store.VersionWatcher`` hears the publish announcement (pub/sub), and polls the
  ``current`` pointers every ``poll_interval_s`` as the fallback for lost messages;
- the lifecycle state or the spec changes (pause, resume, edited traffic shares): these are not announced, so
  a second daemon thread reads every cached experiment's state and spec in one round trip per ``poll_interval_s``;
- this worker's own admin endpoints change something: they reload at once.

A snapshot is built from the latest activations only (a contiguous tail of the history), which covers the
version in force and, in coupled mode, the coupling block it belongs to. Only the first request for an unknown
experiment touches Redis; unknown names are then remembered for ``negative_ttl_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bayesopt.spec import NAME_PATTERN, ExperimentSpec
from param_store import ExperimentNotFoundError, ExperimentState, ParamStore, StoreUnavailableError, VersionWatcher
from serving.assignment import COUPLED_MODE, ServingSnapshot
from serving.config import ServingConfig

log = logging.getLogger(__name__)

#: ``listener(experiment, snapshot, trigger)`` hears of every snapshot swapped in (metrics use it).
Listener = Callable[[str, ServingSnapshot, str], None]


class DistributionCache:
    """Snapshots by experiment name. ``get`` is lock-free; loads of one name are serialised."""

    def __init__(self, store: ParamStore, config: ServingConfig, *, listener: Listener | None = None) -> None:
        self.store = store
        self.config = config
        self.listener = listener
        self.warm = False
        self._snapshots: dict[str, ServingSnapshot] = {}
        self._fingerprints: dict[str, tuple[ExperimentState, ExperimentSpec] | None] = {}
        self._unknown: dict[str, float] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._stop = threading.Event()
        self._watcher: VersionWatcher | None = None
        self._poller: threading.Thread | None = None

    # -- reads ----------------------------------------------------------------------------------------------
    def get(self, name: str) -> ServingSnapshot:
        """The snapshot of ``name``; raises ``ExperimentNotFoundError`` for unknown names."""
        snapshot = self._snapshots.get(name)
        if snapshot is not None:
            return snapshot
        expiry = self._unknown.get(name)
        if expiry is not None and expiry > time.monotonic():
            raise ExperimentNotFoundError(f"no experiment named {name!r}")
        if not NAME_PATTERN.match(name):
            raise ExperimentNotFoundError(f"no experiment named {name!r} (names match {NAME_PATTERN.pattern})")
        return self.load(name, trigger="miss")

    def names(self) -> list[str]:
        return list(self._snapshots)

    # -- loads ----------------------------------------------------------------------------------------------
    def load(self, name: str, *, trigger: str = "reload") -> ServingSnapshot:
        """Read ``name`` from the store and swap its snapshot in (a few round trips)."""
        with self._lock_for(name):
            try:
                snapshot, fingerprint = self._read(name)
            except ExperimentNotFoundError:
                self._remember_unknown(name)
                self._snapshots.pop(name, None)
                raise
            self._snapshots[name] = snapshot
            self._fingerprints[name] = fingerprint
            self._unknown.pop(name, None)
        if self.listener is not None:
            self.listener(name, snapshot, trigger)
        return snapshot

    def _read(self, name: str) -> tuple[ServingSnapshot, tuple[ExperimentState, ExperimentSpec]]:
        stored = self.store.states_and_specs([name])[name]
        if stored is None:
            raise ExperimentNotFoundError(f"no experiment named {name!r}")
        state, spec = stored
        history = self.store.history(name)
        start = self._tail_start(len(history), self.config.mode_for(name))
        tail = history[start:]
        dists = self.store.load_versions(name, [v for v, _ in tail])
        snapshot = ServingSnapshot(
            experiment=name,
            state=state.value,
            experiment_share=spec.traffic.experiment_share,
            stickiness_seconds=spec.stickiness_seconds,
            versions=[(start + i, dists[v]) for i, (v, _) in enumerate(tail)],
            mode=self.config.mode_for(name),
            horizon=self.config.coupling_horizon,
        )
        return snapshot, stored

    def _tail_start(self, n: int, mode: str) -> int:
        """First activation index to hold: ``history_depth`` back, and in coupled mode two whole blocks."""
        start = n - self.config.history_depth
        if mode == COUPLED_MODE and n:
            h = self.config.coupling_horizon
            start = min(start, ((n - 1) // h - 1) * h)
        return max(0, start)

    def _remember_unknown(self, name: str) -> None:
        if self.config.negative_ttl_s > 0:
            if len(self._unknown) > 10_000:  # bound memory under a flood of distinct bad names
                self._unknown.clear()
            self._unknown[name] = time.monotonic() + self.config.negative_ttl_s

    def forget_unknown(self, name: str) -> None:
        self._unknown.pop(name, None)

    def _lock_for(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def warm_up(self) -> bool:
        """Load every stored experiment; returns (and remembers) whether that worked."""
        try:
            for name in self.store.list_experiments():
                try:
                    self.load(name, trigger="warm_up")
                except ExperimentNotFoundError:
                    continue
        except StoreUnavailableError as exc:
            log.warning("cache warm-up failed (%s); retrying every %.1f s", exc, self.config.poll_interval_s)
            return False
        self.warm = True
        return True

    # -- refresh threads ------------------------------------------------------------------------------------
    def start(self) -> DistributionCache:
        """Start the publish watcher and the state/spec poller (daemon threads)."""
        self._watcher = VersionWatcher(
            self.store, self._on_version, self.names, poll_interval_s=self.config.poll_interval_s
        ).start()
        self._poller = threading.Thread(target=self._poll_loop, name="serving-state-poller", daemon=True)
        self._poller.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.stop()
        if self._poller is not None:
            self._poller.join(timeout=self.config.poll_interval_s + 2)

    def _on_version(self, name: str, version: int) -> None:
        snapshot = self._snapshots.get(name)
        if snapshot is not None and (snapshot.current_version or 0) < version:
            self.load(name, trigger="publish")

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.config.poll_interval_s):
            try:
                if not self.warm:
                    self.warm_up()
                self.poll_once()
            except Exception:  # the poller must outlive any one bad read
                log.exception("cache poll failed")

    def poll_once(self) -> None:
        """Reload every cached experiment whose state or spec changed since it was loaded."""
        names = self.names()
        if not names:
            return
        for name, fingerprint in self.store.states_and_specs(names).items():
            if fingerprint != self._fingerprints.get(name):
                try:
                    self.load(name, trigger="poll")
                except ExperimentNotFoundError:
                    continue
