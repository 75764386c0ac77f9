"""The Redis parameter store: specs, lifecycle state, immutable distribution versions, observation statistics.

Thread- and process-safe: every change is a single Redis command, a Lua script or a MULTI transaction, so
concurrent writers in any number of processes never see a half-made change. Stored documents are JSON with a
``schema_version``; nothing is pickled. Distribution versions are immutable: a version key is written once with
``SET NX`` and never rewritten, and the ``current`` pointer only moves forward.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import redis

from bayesopt.distribution import ParameterDistribution
from bayesopt.observations import ObservationStat, merge, parse_rows
from bayesopt.simulator_observations import parse_simulator_rows
from bayesopt.spec import ExperimentSpec
from param_store import observation_codec, scripts, simulator_codec
from param_store.connection import UNAVAILABLE_ERRORS, make_client, store_boundary
from param_store.errors import (
    ExperimentExistsError,
    ExperimentNotFoundError,
    ObservationRejectedError,
    VersionConflictError,
    VersionNotFoundError,
)
from param_store.keys import DEFAULT_NAMESPACE, Keys
from param_store.lease import Lease
from param_store.state import ExperimentState, check_transition

if TYPE_CHECKING:
    import pandas as pd

#: Slack on ``sum_sq <= count`` for a rate's pre-aggregated rows (mean and standard error rebuilt into sums).
RATE_TOLERANCE = 1e-9
#: Refit run records kept per experiment (newest first); older ones are trimmed.
MAX_RUN_RECORDS = 500


@store_boundary
class ParamStore:
    """Facade over one Redis connection and one key namespace; the only code that touches either.

    Raises: :class:`ExperimentNotFoundError` / :class:`VersionNotFoundError` for unknown names and versions,
    :class:`VersionConflictError` when a version would be rewritten or the pointer would move back,
    :class:`ObservationRejectedError` or ``bayesopt.ObservationValidationError`` for bad observations, and
    :class:`StoreUnavailableError` (also a ``ConnectionError``) from any method when Redis cannot be reached or
    times out.
    """

    def __init__(self, client: redis.Redis, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Wrap ``client`` (the store owns it from now on: :meth:`close` closes it).

        Args:
            client: a redis-py client; :func:`~param_store.make_client` builds one with the retry policy.
            namespace: the key prefix that isolates this deployment (or test) on a shared server.
        """
        self._redis = client
        self._keys = Keys(namespace)
        self._activate = client.register_script(scripts.ACTIVATE)
        self._set_state_if = client.register_script(scripts.SET_STATE_IF)

    @classmethod
    def from_url(cls, url: str, *, namespace: str = DEFAULT_NAMESPACE) -> ParamStore:
        """A store on a client from :func:`~param_store.make_client` (its timeouts and retries)."""
        return cls(make_client(url), namespace=namespace)

    @property
    def namespace(self) -> str:
        """The key prefix of this store (read-only)."""
        return self._keys.namespace

    # -- connection ------------------------------------------------------------------------------------------
    def ping(self) -> bool:
        """Whether the server answers (after the client's retries); never raises for a lost server."""
        try:
            return bool(self._redis.ping())
        except UNAVAILABLE_ERRORS:
            return False

    def close(self) -> None:
        """Close the client's connections (a later call would open new ones)."""
        self._redis.close()

    def __enter__(self) -> ParamStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lease(self, name: str, purpose: str, *, ttl_s: float) -> Lease:
        """A lock on ``(name, purpose)`` renewed by a heartbeat while held; see :class:`~param_store.Lease`.

        Args:
            name: the experiment.
            purpose: what the lock guards, e.g. ``"refit:1700000000"`` (one lock per distinct purpose).
            ttl_s: how long the lock outlives a holder that died without releasing it.

        Returns:
            A lease that is not acquired yet (no round trip so far).
        """
        return Lease(self._redis, self._keys.lock(name, purpose), ttl_s=ttl_s)

    # -- specs and lifecycle ---------------------------------------------------------------------------------
    def create_experiment(self, spec: ExperimentSpec) -> None:
        """Store a new experiment in the draft state; raises :class:`ExperimentExistsError` if the name is taken."""
        if not self._redis.set(self._keys.spec(spec.name), spec.to_json(), nx=True):
            raise ExperimentExistsError(f"experiment {spec.name!r} exists already")
        self._redis.set(self._keys.state(spec.name), ExperimentState.DRAFT.value)
        self._redis.sadd(self._keys.experiments, spec.name)

    def save_spec(self, spec: ExperimentSpec) -> None:
        """Replace the stored spec of an existing experiment (later refits use it; published versions keep their hash)."""
        self._require(spec.name)
        self._redis.set(self._keys.spec(spec.name), spec.to_json())

    def load_spec(self, name: str) -> ExperimentSpec:
        raw = self._redis.get(self._keys.spec(name))
        if raw is None:
            raise ExperimentNotFoundError(f"no experiment named {name!r}")
        return ExperimentSpec.from_json(raw.decode())

    def list_experiments(self) -> list[str]:
        return sorted(m.decode() for m in self._redis.smembers(self._keys.experiments))

    def exists(self, name: str) -> bool:
        return bool(self._redis.exists(self._keys.spec(name)))

    def _require(self, name: str) -> None:
        if not self.exists(name):
            raise ExperimentNotFoundError(f"no experiment named {name!r}")

    def state(self, name: str) -> ExperimentState:
        raw = self._redis.get(self._keys.state(name))
        if raw is None:
            raise ExperimentNotFoundError(f"no experiment named {name!r}")
        return ExperimentState(raw.decode())

    def states_and_specs(self, names: Iterable[str]) -> dict[str, tuple[ExperimentState, ExperimentSpec] | None]:
        """The lifecycle state and spec of each of ``names`` in one round trip.

        Args:
            names: experiment names (duplicates are read once).

        Returns:
            ``{name: (state, spec)}`` in the order given, with None for a name that is not stored.
        """
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        raws = self._redis.mget([k for n in names for k in (self._keys.state(n), self._keys.spec(n))])
        out: dict[str, tuple[ExperimentState, ExperimentSpec] | None] = {}
        for i, name in enumerate(names):
            state_raw, spec_raw = raws[2 * i], raws[2 * i + 1]
            if state_raw is None or spec_raw is None:
                out[name] = None
            else:
                out[name] = (ExperimentState(state_raw.decode()), ExperimentSpec.from_json(spec_raw.decode()))
        return out

    def transition(self, name: str, target: ExperimentState | str) -> ExperimentState:
        """Move the experiment to ``target``; raises :class:`InvalidTransitionError` naming the allowed ones."""
        target = ExperimentState(target)
        while True:
            current = self.state(name)
            check_transition(name, current, target)
            if self._set_state_if(keys=[self._keys.state(name)], args=[current.value, target.value]):
                return target

    # -- distributions ---------------------------------------------------------------------------------------
    def next_version(self, name: str) -> int:
        """Reserve a fresh version number (strictly larger than any handed out before)."""
        self._require(name)
        return int(self._redis.incr(self._keys.version_seq(name)))

    def write_version(self, dist: ParameterDistribution) -> None:
        """Write a version record once; raises :class:`VersionConflictError` if that version exists."""
        self._require(dist.experiment)
        if not self._redis.set(self._keys.version(dist.experiment, dist.version), dist.to_json(), nx=True):
            raise VersionConflictError(f"{dist.experiment!r} version {dist.version} exists already and is immutable")

    def activate(self, name: str, version: int, *, at: float | None = None) -> int:
        """Point ``current`` at ``version`` in one atomic step and announce it; returns the previous version.

        ``at`` (epoch seconds) is the activation time kept in the history; None takes the Redis server's clock,
        so that activations by different processes are recorded in the order they happened.
        """
        result = int(
            self._activate(
                keys=[self._keys.current(name), self._keys.history(name), self._keys.version(name, version)],
                args=[version, "" if at is None else repr(float(at)), self._keys.channel(name)],
            )
        )
        if result == -2:
            raise VersionNotFoundError(f"{name!r} has no version {version} to activate")
        if result == -1:
            raise VersionConflictError(f"{name!r} version {version} is not newer than current {self.current_version(name)}")
        return result

    def publish(self, dist: ParameterDistribution) -> ParameterDistribution:
        """Write ``dist`` as a new immutable version, then switch ``current`` to it."""
        self.write_version(dist)
        self.activate(dist.experiment, dist.version)
        return dist

    def current_version(self, name: str) -> int | None:
        raw = self._redis.get(self._keys.current(name))
        return None if raw is None else int(raw)

    def current_versions(self, names: Iterable[str]) -> dict[str, int | None]:
        """The ``current`` pointer of each of ``names`` in one round trip (None: nothing activated, or unknown)."""
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        raws = self._redis.mget([self._keys.current(n) for n in names])
        return {n: None if raw is None else int(raw) for n, raw in zip(names, raws, strict=True)}

    def current(self, name: str) -> ParameterDistribution:
        """The distribution ``current`` points at; raises :class:`VersionNotFoundError` before the first publish."""
        version = self.current_version(name)
        if version is None:
            self._require(name)
            raise VersionNotFoundError(f"{name!r} has no published distribution yet")
        return self.load_version(name, version)

    def load_version(self, name: str, version: int) -> ParameterDistribution:
        raw = self._redis.get(self._keys.version(name, version))
        if raw is None:
            self._require(name)
            raise VersionNotFoundError(f"{name!r} has no version {version}")
        return ParameterDistribution.from_json(raw)

    def load_versions(self, name: str, versions: Iterable[int]) -> dict[int, ParameterDistribution]:
        """Several versions in one round trip; raises :class:`VersionNotFoundError` naming any missing."""
        versions = sorted(set(versions))
        if not versions:
            return {}
        raws = self._redis.mget([self._keys.version(name, v) for v in versions])
        missing = [v for v, raw in zip(versions, raws, strict=True) if raw is None]
        if missing:
            raise VersionNotFoundError(f"{name!r} has no versions {missing}")
        return {v: ParameterDistribution.from_json(raw) for v, raw in zip(versions, raws, strict=True)}

    def history(self, name: str) -> list[tuple[int, float]]:
        """Activated versions with their activation times, oldest first."""
        self._require(name)
        return [(int(v), float(t)) for v, t in self._redis.zrange(self._keys.history(name), 0, -1, withscores=True)]

    def rollback(self, name: str, version: int) -> ParameterDistribution:
        """Publish a new version whose content repeats ``version`` (which must have been activated)."""
        if self._redis.zscore(self._keys.history(name), version) is None:
            self._require(name)
            raise VersionNotFoundError(f"{name!r} never activated version {version}; see its history")
        old = self.load_version(name, version)
        now = time.time()
        new = old.replace(version=self.next_version(name), created_at=now, valid_from=now, source_version=version)
        return self.publish(new)

    # -- observations ----------------------------------------------------------------------------------------
    def add_observations(self, name: str, rows: Iterable[Mapping[str, Any] | ObservationStat]) -> int:
        """Validate a batch against the experiment and add it atomically; returns the number of rows stored.

        Rows are raw dicts (see ``bayesopt.observations``) or :class:`ObservationStat`. A batch with any bad row
        is refused whole, with every problem named.
        """
        rows = list(rows)
        stats = [r for r in rows if isinstance(r, ObservationStat)]
        raw = [r for r in rows if not isinstance(r, ObservationStat)]
        if raw:
            stats += parse_rows(raw)
        stats = merge(stats)
        self._check_references(name, stats)
        pipe = self._redis.pipeline(transaction=True)
        key = self._keys.observations(name)
        for s in stats:
            for field, amount in observation_codec.increments(s):
                pipe.hincrbyfloat(key, field, amount)
        pipe.execute()
        return len(rows)

    def _check_references(self, name: str, stats: list[ObservationStat]) -> None:
        spec = self.load_spec(name)
        metrics = set(spec.metric_names)
        rates = {m.name for m in spec.metrics if m.kind == "rate"}
        versions = sorted({s.version for s in stats})
        raws = self._redis.mget([self._keys.version(name, v) for v in versions]) if versions else []
        arms_of = {v: None if raw is None else {a["arm_id"] for a in json.loads(raw)["arms"]} for v, raw in zip(versions, raws, strict=True)}
        problems = []
        for s in stats:
            arms = arms_of[s.version]
            if arms is None:
                problems.append(f"version {s.version}: {name!r} has no such distribution version")
            elif s.arm_id not in arms:
                problems.append(f"arm_id {s.arm_id!r}: not an arm of {name!r} version {s.version}")
            if s.metric not in metrics:
                problems.append(f"metric {s.metric!r}: not a metric of {name!r} (declared: {', '.join(sorted(metrics))})")
            elif s.metric in rates and not (0.0 <= s.sum <= s.count and s.sum_sq <= s.count * (1 + RATE_TOLERANCE)):
                problems.append(f"metric {s.metric!r} (version {s.version}, arm {s.arm_id!r}): a rate's outcomes lie in "
                                f"[0, 1], so 0 <= sum <= count and sum_sq <= count; got count {s.count:g}, sum "
                                f"{s.sum:g}, sum_sq {s.sum_sq:g}")
        if problems:
            raise ObservationRejectedError(sorted(set(problems)))

    def observations(self, name: str) -> pd.DataFrame:
        """All statistics of the experiment, one row per (version, arm, metric, source); see ``STAT_COLUMNS``."""
        self._require(name)
        return observation_codec.decode(self._redis.hgetall(self._keys.observations(name)))

    # -- simulator observations ------------------------------------------------------------------------------
    def add_simulator_observations(self, name: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Validate simulator rows against the experiment's spec and add them in one transaction.

        Rows are keyed by (run, parameter values, metric), not by a served version (see
        ``bayesopt.simulator_observations``). A batch with any bad row is refused whole, with every problem named;
        returns the number of rows stored.
        """
        rows = list(rows)
        increments = [pair for s in parse_simulator_rows(self.load_spec(name), rows) for pair in simulator_codec.increments(s)]
        key = self._keys.simulator_observations(name)
        pipe = self._redis.pipeline(transaction=True)
        for field, amount in increments:
            pipe.hincrbyfloat(key, field, amount)
        pipe.execute()
        return len(rows)

    def simulator_observations(self, name: str) -> pd.DataFrame:
        """All simulator statistics of the experiment (``SIMULATOR_COLUMNS`` plus ``x.<name>`` per parameter)."""
        spec = self.load_spec(name)
        return simulator_codec.decode(self._redis.hgetall(self._keys.simulator_observations(name)), spec.parameter_names)

    def clear_simulator_observations(self, name: str) -> int:
        """Forget every simulator row of the experiment; returns 1 if there were any."""
        self._require(name)
        return int(self._redis.delete(self._keys.simulator_observations(name)))

    # -- refit run records -----------------------------------------------------------------------------------
    def record_run(self, name: str, record: Mapping[str, Any]) -> None:
        """Prepend a JSON run record (refit status) and trim old ones."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpush(self._keys.runs(name), json.dumps(dict(record), sort_keys=True, allow_nan=False))
        pipe.ltrim(self._keys.runs(name), 0, MAX_RUN_RECORDS - 1)
        pipe.execute()

    def runs(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """Newest run records first."""
        return [json.loads(r) for r in self._redis.lrange(self._keys.runs(name), 0, limit - 1)]

    def mark_refit_done(self, name: str, period: int, summary: Mapping[str, Any], *, ttl_s: int) -> None:
        """Record that the refit of ``period`` finished (overwriting any earlier marker); expires after ``ttl_s``."""
        self._redis.set(self._keys.refit_done(name, period), json.dumps(dict(summary), sort_keys=True, allow_nan=False), ex=ttl_s)

    def refit_done(self, name: str, period: int) -> dict[str, Any] | None:
        """The summary stored by :meth:`mark_refit_done`, or None if that period has not been refitted."""
        raw = self._redis.get(self._keys.refit_done(name, period))
        return None if raw is None else json.loads(raw)

    def save_model_state(self, name: str, version: int, state: Mapping[str, Any]) -> None:
        """Keep the JSON warm-start state of the fit behind ``version`` (the next refit starts from it)."""
        doc = {"schema_version": 1, "version": version, "state": dict(state)}
        self._redis.set(self._keys.model_state(name), json.dumps(doc, sort_keys=True, allow_nan=False))

    def load_model_state(self, name: str) -> dict[str, Any] | None:
        """``{"version", "state"}`` saved by :meth:`save_model_state`, or None (none saved, or an unknown schema)."""
        raw = self._redis.get(self._keys.model_state(name))
        if raw is None:
            return None
        doc = json.loads(raw)
        return doc if doc.get("schema_version") == 1 else None

    def clear_model_state(self, *names: str) -> int:
        """Forget the warm-start state of ``names`` (their next refit starts cold); returns how many there were."""
        if not names:
            return 0
        return int(self._redis.delete(*[self._keys.model_state(n) for n in names]))
