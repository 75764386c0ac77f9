"""The per-worker distribution cache: parameter requests read snapshots from memory and never wait on Redis.

Each worker holds one immutable :class:`~serving.assignment.ServingSnapshot` per experiment and swaps in a new
one when something changes. Every Redis read happens off the request path:

- a version is activated: ``param_store.VersionWatcher`` hears the publish announcement (pub/sub) and the
  watcher thread loads it;
- every ``poll_interval_s`` the refresher thread reads the experiment list and every experiment's state, spec
  and ``current`` pointer (two round trips) and reloads what changed: the fallback for lost announcements, and
  the only path for unannounced changes (pause, resume, edited traffic shares) and new experiments;
- this worker's own admin endpoints change something: they reload at once.

**Faults.** A failed refresh keeps every held snapshot and marks the cache *stale* (``staleness`` says since
when; the API puts it in a ``Bayesopt-Stale`` header). A store that answers but has lost an experiment this
worker serves, or whose ``current`` pointer went backwards (an empty or older restore), never makes the worker
drop what it holds: it keeps serving it, raises an *alarm* (one error log line, a metric, the ready body) and
waits for an operator (restore the data, or restart the workers to accept the store as it is).

A snapshot is built from the latest activations only (a contiguous tail of the history), which covers the
version in force and, in coupled mode, the coupling block it belongs to. A request for a name the worker does
not hold reads the store once (if the store is reachable); unknown names are then remembered for
``negative_ttl_s`` in a bounded table, and loads share a fixed set of locks, so a flood of distinct bad names
costs no memory that lasts.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from bayesopt.spec import NAME_PATTERN
from param_store import ExperimentNotFoundError, ParamStore, StoreUnavailableError, VersionWatcher
from param_store.store import ExperimentView
from serving.assignment import COUPLED_MODE, ServingSnapshot
from serving.config import ServingConfig
from serving.errors import ServiceUnavailableError

log = logging.getLogger(__name__)

#: ``listener(experiment, snapshot, trigger)`` hears of every snapshot swapped in (metrics use it).
Listener = Callable[[str, ServingSnapshot, str], None]
#: ``alarm_listener(experiment, reason, active)`` hears each alarm raised (True) and cleared (False).
AlarmListener = Callable[[str, str, bool], None]
#: ``store_listener(reachable)`` hears each refresh's verdict on the store.
StoreListener = Callable[[bool], None]

#: Alarm reasons: the store no longer has an experiment this worker serves, or its pointer went backwards.
MISSING_FROM_STORE = "missing_from_store"
VERSION_REGRESSED = "version_regressed"
#: Staleness reason when the last refresh could not reach the store.
STORE_UNAVAILABLE = "store_unavailable"
#: Loads of different names run in parallel over this many locks (a name always takes the same one).
LOAD_LOCK_STRIPES = 64


@dataclass(frozen=True)
class Staleness:
    """Why the snapshot served may be out of date, and for how long the store has not confirmed it."""

    reason: str
    seconds: float

    def header(self) -> str:
        return f"{self.reason}; age={self.seconds:.1f}"


class DistributionCache:
    """Snapshots by experiment name. ``get`` never touches Redis for a held name; loads of one name are serialised."""

    def __init__(self, store: ParamStore, config: ServingConfig, *, listener: Listener | None = None,
                 alarm_listener: AlarmListener | None = None, store_listener: StoreListener | None = None) -> None:
        self.store = store
        self.config = config
        self.listener = listener
        self.alarm_listener = alarm_listener
        self.store_listener = store_listener
        self.warm = False
        self.store_reachable = True
        self._last_confirmed = time.monotonic()
        self._snapshots: dict[str, ServingSnapshot] = {}
        self._views: dict[str, ExperimentView] = {}
        self._alarms: dict[str, str] = {}
        self._unknown: dict[str, float] = {}
        self._load_locks = tuple(threading.Lock() for _ in range(LOAD_LOCK_STRIPES))
        self._stop = threading.Event()
        self._watcher: VersionWatcher | None = None
        self._refresher: threading.Thread | None = None

    # -- reads (the request path) ---------------------------------------------------------------------------
    def get(self, name: str) -> ServingSnapshot:
        """The snapshot of ``name``.

        Raises:
            ExperimentNotFoundError: the name is not held and the store does not know it.
            ServiceUnavailableError: the name is not held and the store cannot be reached to look it up.
        """
        snapshot = self._snapshots.get(name)
        if snapshot is not None:
            return snapshot
        expiry = self._unknown.get(name)
        if expiry is not None and expiry > time.monotonic():
            raise ExperimentNotFoundError(f"no experiment named {name!r}")
        if not NAME_PATTERN.match(name):
            raise ExperimentNotFoundError(f"no experiment named {name!r} (names match {NAME_PATTERN.pattern})")
        if not self.store_reachable:
            raise ServiceUnavailableError(f"experiment {name!r} is not held by this worker and the store cannot be "
                                          "reached to look it up; retry later", code="store_unavailable")
        return self.load(name, trigger="miss")

    def held(self, name: str) -> ServingSnapshot | None:
        """The snapshot of ``name`` if this worker holds one (a dict lookup; never loads)."""
        return self._snapshots.get(name)

    def staleness(self, name: str) -> Staleness | None:
        """None while the store confirms what is served (the usual case, checked in two dict lookups)."""
        if self.store_reachable and not self._alarms:
            return None
        age = time.monotonic() - self._last_confirmed
        alarm = self._alarms.get(name)
        if alarm is not None:
            return Staleness(alarm, age)
        return None if self.store_reachable else Staleness(STORE_UNAVAILABLE, age)

    def names(self) -> list[str]:
        return list(self._snapshots)

    def alarms(self) -> dict[str, str]:
        """``{experiment: reason}`` of the experiments served from memory because the store lost them."""
        return dict(self._alarms)

    def sizes(self) -> dict[str, int]:
        """How much the cache holds: snapshots, remembered unknown names and load locks (all bounded)."""
        return {"snapshots": len(self._snapshots), "unknown_names": len(self._unknown), "load_locks": len(self._load_locks)}

    def seconds_since_store_contact(self) -> float:
        return time.monotonic() - self._last_confirmed

    # -- loads ----------------------------------------------------------------------------------------------
    def load(self, name: str, *, trigger: str = "reload") -> ServingSnapshot:
        """Read ``name`` from the store and swap its snapshot in (a few round trips).

        A held snapshot with versions is kept (and alarmed) if the store no longer has the experiment.

        Raises:
            ExperimentNotFoundError: the store does not have ``name`` and this worker holds nothing to serve.
            StoreUnavailableError: the store cannot be reached.
        """
        with self._load_locks[zlib.crc32(name.encode()) % LOAD_LOCK_STRIPES]:
            try:
                snapshot, view = self._read(name)
            except ExperimentNotFoundError:
                held = self._snapshots.get(name)
                if held is not None and held.distributions:
                    self._raise_alarm(name, MISSING_FROM_STORE)
                    return held
                self._snapshots.pop(name, None)
                self._views.pop(name, None)
                self._remember_unknown(name)
                raise
            self._snapshots[name] = snapshot
            self._views[name] = view
            self._unknown.pop(name, None)
            self._clear_alarm(name)
        if self.listener is not None:
            self.listener(name, snapshot, trigger)
        return snapshot

    def report_missing(self, name: str) -> None:
        """A write found ``name`` missing from the store while this worker serves it: alarm now, keep serving."""
        if name in self._snapshots:
            self._raise_alarm(name, MISSING_FROM_STORE)

    def drop(self, name: str) -> None:
        """Forget ``name`` (an admin deleted it through this worker)."""
        self._snapshots.pop(name, None)
        self._views.pop(name, None)
        self._clear_alarm(name)

    def _read(self, name: str) -> tuple[ServingSnapshot, ExperimentView]:
        view = self.store.overview([name])[name]
        if view is None:
            raise ExperimentNotFoundError(f"no experiment named {name!r}")
        history = self.store.history(name)
        mode = self.config.mode_for(name)
        start = self._tail_start(len(history), mode)
        tail = history[start:]
        dists = self.store.load_versions(name, [v for v, _ in tail])
        snapshot = ServingSnapshot(
            experiment=name,
            state=view.state.value,
            experiment_share=view.spec.traffic.experiment_share,
            stickiness_seconds=view.spec.stickiness_seconds,
            versions=[(start + i, dists[v]) for i, (v, _) in enumerate(tail)],
            mode=mode,
            horizon=self.config.coupling_horizon,
        )
        # the pointer the snapshot was built from, not one read before the history (a publish may sit between)
        return snapshot, view._replace(current_version=snapshot.current_version)

    def _tail_start(self, n: int, mode: str) -> int:
        """First activation index to hold: ``history_depth`` back, and in coupled mode two whole blocks."""
        start = n - self.config.history_depth
        if mode == COUPLED_MODE and n:
            h = self.config.coupling_horizon
            start = min(start, ((n - 1) // h - 1) * h)
        return max(0, start)

    def _remember_unknown(self, name: str) -> None:
        if self.config.negative_ttl_s > 0:
            if len(self._unknown) >= self.config.max_unknown_names:
                self._unknown.clear()
            self._unknown[name] = time.monotonic() + self.config.negative_ttl_s

    def forget_unknown(self, name: str) -> None:
        self._unknown.pop(name, None)

    def warm_up(self) -> bool:
        """Load every stored experiment; returns (and remembers) whether that worked."""
        try:
            self.refresh_once()
        except StoreUnavailableError:
            return False
        return self.warm

    # -- alarms and store health -----------------------------------------------------------------------------
    def _raise_alarm(self, name: str, reason: str) -> None:
        if self._alarms.get(name) == reason:
            return
        self._alarms[name] = reason
        held = self._snapshots.get(name)
        log.error("experiment %r: %s; serving the held version %s from memory until an operator restores the "
                  "store or restarts the workers (see docs/operations.md)", name, reason.replace("_", " "),
                  held.current_version if held else None)
        if self.alarm_listener is not None:
            self.alarm_listener(name, reason, True)

    def _clear_alarm(self, name: str) -> None:
        reason = self._alarms.pop(name, None)
        if reason is not None:
            log.warning("experiment %r: alarm %s cleared; the store has it again", name, reason)
            if self.alarm_listener is not None:
                self.alarm_listener(name, reason, False)

    def _set_reachable(self, reachable: bool, detail: str = "") -> None:
        if reachable:
            self._last_confirmed = time.monotonic()
            if not self.store_reachable:
                log.warning("store reachable again; cache refreshes resumed")
        elif self.store_reachable:
            log.warning("store unreachable (%s); serving held snapshots from memory, stale from now on", detail)
        self.store_reachable = reachable
        if self.store_listener is not None:
            self.store_listener(reachable)

    # -- refresh threads ------------------------------------------------------------------------------------
    def start(self) -> DistributionCache:
        """Start the publish watcher and the refresher (daemon threads)."""
        self._watcher = VersionWatcher(
            self.store, self._on_version, self.names, poll_interval_s=self.config.poll_interval_s
        ).start()
        self._refresher = threading.Thread(target=self._refresh_loop, name="serving-cache-refresher", daemon=True)
        self._refresher.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.stop()
        if self._refresher is not None:
            self._refresher.join(timeout=self.config.poll_interval_s + 2)

    def _on_version(self, name: str, version: int) -> None:
        snapshot = self._snapshots.get(name)
        if snapshot is None or (snapshot.current_version or 0) < version:
            try:
                self.load(name, trigger="publish")
            except (ExperimentNotFoundError, StoreUnavailableError):
                pass  # the refresher retries and reports the store's health

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.config.poll_interval_s):
            try:
                self.refresh_once()
            except StoreUnavailableError:
                pass  # refresh_once has logged the transition once; no traceback per poll during an outage
            except Exception:  # the refresher must outlive any one bad read
                log.exception("cache refresh failed")

    def refresh_once(self) -> None:
        """Reload every experiment whose state, spec or pointer changed, load new ones, alarm on lost ones.

        Raises:
            StoreUnavailableError: the store could not be reached (the cache is marked stale first).
        """
        try:
            stored_names = self.store.list_experiments()
            views = self.store.overview(sorted(set(stored_names) | set(self._snapshots)))
        except StoreUnavailableError as exc:
            self._set_reachable(False, str(exc))
            raise
        self._set_reachable(True)
        for name, view in views.items():
            try:
                self._refresh(name, view)
            except ExperimentNotFoundError:
                continue
            except StoreUnavailableError as exc:
                self._set_reachable(False, str(exc))
                raise
        self.warm = True

    @staticmethod
    def _regressed(held: ServingSnapshot | None, view: ExperimentView) -> bool:
        """Whether the store's pointer is behind (or lost) the version this worker serves."""
        held_version = held.current_version if held is not None else None
        return held_version is not None and (view.current_version is None or view.current_version < held_version)

    def _refresh(self, name: str, view: ExperimentView | None) -> None:
        held = self._snapshots.get(name)
        if view is None:
            if held is not None and held.distributions:
                self._raise_alarm(name, MISSING_FROM_STORE)
            elif held is not None:
                self.drop(name)
            return
        if self._regressed(held, view):
            view = self.store.overview([name])[name]  # confirm: a publish may have been loaded since the first read
            if view is None or self._regressed(self._snapshots.get(name), view):
                self._raise_alarm(name, MISSING_FROM_STORE if view is None else VERSION_REGRESSED)
                return
        if held is None or view != self._views.get(name):
            self.load(name, trigger="poll" if held is not None else "discovered")
        else:
            self._clear_alarm(name)
