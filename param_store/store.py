"""The Redis parameter store: specs, lifecycle state, immutable distribution versions, observation statistics.

Thread- and process-safe: every change is a single Redis command, a Lua script or a MULTI transaction, so
concurrent writers in any number of processes never see a half-made change. Stored documents are JSON with a
``schema_version``; nothing is pickled. Distribution versions are immutable: a version key is written once with
``SET NX`` and never rewritten, and the ``current`` pointer only moves forward.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import redis

from bayesopt.distribution import ParameterDistribution
from bayesopt.errors import ObservationValidationError
from bayesopt.observations import ObservationStat, merge, parse_rows
from bayesopt.simulator_observations import parse_simulator_rows
from bayesopt.spec import ExperimentSpec
from param_store import arm_index, observation_codec, scripts, simulator_codec
from param_store.connection import UNAVAILABLE_ERRORS, is_cluster, make_client, store_boundary
from param_store.errors import (
    ExperimentExistsError,
    ExperimentNotFoundError,
    InvalidTransitionError,
    ObservationRejectedError,
    VersionConflictError,
    VersionNotFoundError,
)
from param_store.keys import DEFAULT_NAMESPACE, FIELD_SEP, Keys
from param_store.lease import Lease
from param_store.state import ExperimentState, check_transition

if TYPE_CHECKING:
    import pandas as pd

#: Slack on ``sum_sq <= count`` for a rate's pre-aggregated rows (mean and standard error rebuilt into sums).
RATE_TOLERANCE = 1e-9
#: Refit run records kept per experiment (newest first); older ones are trimmed.
MAX_RUN_RECORDS = 500


#: How long a stored batch's idempotency key is remembered: far longer than any client retries a batch.
BATCH_KEY_TTL_S = 7 * 24 * 3600
#: An idempotency key: 1 to 128 characters of letters, digits and ``._:-``.
BATCH_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def check_batch_id(batch_id: Any) -> str:
    """``batch_id`` if it is a valid idempotency key; raises ``ObservationValidationError`` naming the rule."""
    if not isinstance(batch_id, str) or not BATCH_ID_PATTERN.fullmatch(batch_id):
        raise ObservationValidationError(f"batch_id: must be 1 to 128 characters of letters, digits and ._:-, got {batch_id!r}")
    return batch_id


class BatchResult(NamedTuple):
    """What :meth:`ParamStore.add_batch` did: rows accepted, and whether the batch had been stored before."""

    accepted: int
    duplicate: bool


class RecentObservations(NamedTuple):
    """What :meth:`ParamStore.recent_observations` read together: the statistics not rolled up (a
    ``STAT_COLUMNS`` frame), their raw hash fields, and the roll-up of the others (its JSON; None: none)."""

    stats: pd.DataFrame
    fields: dict[bytes, bytes]
    rollup: bytes | None


class ExperimentView(NamedTuple):
    """What serving needs to know has changed: lifecycle state, spec, and the ``current`` version (None: none yet)."""

    state: ExperimentState
    spec: ExperimentSpec
    current_version: int | None


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
        self._add_observations = client.register_script(scripts.ADD_OBSERVATIONS)
        self._launch = client.register_script(scripts.LAUNCH)
        self._write_version = client.register_script(scripts.WRITE_VERSION)
        self._index_arms = client.register_script(scripts.INDEX_ARMS)
        self._delete_draft = client.register_script(scripts.DELETE_DRAFT)
        self._roll_up = client.register_script(scripts.ROLL_UP)
        self._cluster = is_cluster(client)
        self._specs_seen: dict[str, tuple[bytes, ExperimentSpec]] = {}

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        """``MGET``; on Redis Cluster split by slot (keys of different experiments live on different nodes)."""
        return self._redis.mget_nonatomic(keys) if self._cluster else self._redis.mget(keys)

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
        self._redis.sadd(self._keys.experiments, spec.name)  # first: see list_experiments
        if not self._redis.set(self._keys.spec(spec.name), spec.to_json(), nx=True):
            raise ExperimentExistsError(f"experiment {spec.name!r} exists already")
        self._redis.set(self._keys.state(spec.name), ExperimentState.DRAFT.value)

    def launch(self, spec: ExperimentSpec, first: ParameterDistribution) -> None:
        """Store ``spec`` running with ``first`` as version 1, activated, in one atomic step (all or nothing).

        Raises:
            ExperimentExistsError: the name is taken (nothing was written).
            VersionConflictError: ``first`` is not version 1 of ``spec``'s experiment.
        """
        if first.experiment != spec.name or first.version != 1:
            raise VersionConflictError(f"a launch publishes version 1 of {spec.name!r}, got {first.experiment!r} "
                                       f"version {first.version}")
        spec_json, first_json = spec.to_json(), first.to_json()  # serialise (and so check) before writing
        k, name = self._keys, spec.name
        keys = [k.spec(name), k.state(name), k.version_seq(name), k.version(name, 1), k.current(name), k.history(name),
                k.arm_values(name)]
        args = [spec_json, first_json, ExperimentState.RUNNING.value, k.channel(name), *arm_index.script_args([first])]
        self._redis.sadd(k.experiments, name)  # first: see list_experiments
        if not self._launch(keys=keys, args=args):
            raise ExperimentExistsError(f"experiment {name!r} exists already")

    def delete_draft(self, name: str) -> None:
        """Delete a draft experiment and every key it has (a launch that never finished leaves one).

        Raises:
            ExperimentNotFoundError: no such experiment.
            InvalidTransitionError: it is not a draft (running, paused and ended experiments are kept).
        """
        self.state(name)  # ExperimentNotFoundError for an unknown name
        keys = [key for key in self._redis.scan_iter(match=self._keys.pattern(name), count=1000)
                if key.decode() != self._keys.state(name)]
        if not self._delete_draft(keys=[self._keys.state(name), *keys]):
            raise InvalidTransitionError(f"experiment {name!r} is {self.state(name).value}, not a draft; only a draft "
                                         "can be deleted (end it instead)")
        self._redis.srem(self._keys.experiments, name)

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
        """The stored experiments, sorted.

        The name set lives in its own cluster slot, so it cannot change in the same script as an experiment's
        keys: a name is added before an experiment is written and removed after it is deleted. A crash between
        the two leaves a name with nothing stored, which this filters out (never an experiment that is not
        listed); it is not cleaned up, since a launch in progress looks just the same.
        """
        names = sorted(m.decode() for m in self._redis.smembers(self._keys.experiments))
        states = self._mget([self._keys.state(n) for n in names]) if names else []
        return [n for n, state in zip(names, states, strict=True) if state is not None]

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
        raws = self._mget([k for n in names for k in (self._keys.state(n), self._keys.spec(n))])
        out: dict[str, tuple[ExperimentState, ExperimentSpec] | None] = {}
        for i, name in enumerate(names):
            state_raw, spec_raw = raws[2 * i], raws[2 * i + 1]
            if state_raw is None or spec_raw is None:
                out[name] = None
            else:
                out[name] = (ExperimentState(state_raw.decode()), ExperimentSpec.from_json(spec_raw.decode()))
        return out

    def overview(self, names: Iterable[str]) -> dict[str, ExperimentView | None]:
        """State, spec and ``current`` pointer of each of ``names`` in one round trip (the serving refresher's read).

        Returns:
            ``{name: ExperimentView}`` in the order given, with None for a name whose spec or state is not stored.
        """
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        keys = self._keys
        raws = self._mget([k for n in names for k in (keys.state(n), keys.spec(n), keys.current(n))])
        out: dict[str, ExperimentView | None] = {}
        for i, name in enumerate(names):
            state_raw, spec_raw, current_raw = raws[3 * i : 3 * i + 3]
            if state_raw is None or spec_raw is None:
                out[name] = None
                self._specs_seen.pop(name, None)
            else:
                out[name] = ExperimentView(ExperimentState(state_raw.decode()), self._parsed_spec(name, spec_raw),
                                           None if current_raw is None else int(current_raw))
        return out

    def _parsed_spec(self, name: str, raw: bytes) -> ExperimentSpec:
        """The spec stored as ``raw``, parsed once per distinct document: a refresher reads every held experiment's
        spec every poll, and validating a thousand specs each time holds a serving worker's GIL for most of a second."""
        seen = self._specs_seen.get(name)
        if seen is not None and seen[0] == raw:
            return seen[1]
        spec = ExperimentSpec.from_json(raw.decode())
        self._specs_seen[name] = (raw, spec)
        return spec

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
        """Write a version record once, and its arms into the arm-values index in the same step; raises
        :class:`VersionConflictError` (and writes nothing) if that version exists."""
        self._require(dist.experiment)
        name = dist.experiment
        keys = [self._keys.version(name, dist.version), self._keys.arm_values(name)]
        if not self._write_version(keys=keys, args=[dist.to_json(), *arm_index.script_args([dist])]):
            raise VersionConflictError(f"{name!r} version {dist.version} exists already and is immutable")

    def arm_values(self, name: str, arm_ids: Iterable[str]) -> dict[str, dict[str, float]]:
        """Parameter values of each of ``arm_ids`` found in the arm-values index (one ``HMGET``, whatever the
        number of versions); arms it lacks (served only by versions stored before the index existed) are left out.
        """
        arm_ids = sorted(set(arm_ids))
        if not arm_ids:
            return {}
        return arm_index.decode(arm_ids, self._redis.hmget(self._keys.arm_values(name), arm_ids))

    def index_arm_values(self, dists: Iterable[ParameterDistribution]) -> None:
        """Merge the arms of stored ``dists`` (one experiment) into its arm-values index (a backfill)."""
        dists = list(dists)
        if dists:
            self._index_arms(keys=[self._keys.arm_values(dists[0].experiment)], args=arm_index.script_args(dists))

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
        raws = self._mget([self._keys.current(n) for n in names])
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
        raws = self._mget([self._keys.version(name, v) for v in versions])
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

    # -- analysts' decisions (param_store.decisions) --------------------------------------------------------
    def set_frozen(self, name: str, frozen: bool, *, note: Mapping[str, Any] | None = None) -> None:
        """Freeze (refits skip, the current version keeps serving) or unfreeze ``name``; ``note`` says who and why."""
        self._require(name)
        if frozen:
            self._redis.set(self._keys.frozen(name), json.dumps(dict(note or {}), sort_keys=True, allow_nan=False))
        else:
            self._redis.delete(self._keys.frozen(name))

    def frozen(self, name: str) -> dict[str, Any] | None:
        """The note :meth:`set_frozen` stored while ``name`` is frozen, else None."""
        raw = self._redis.get(self._keys.frozen(name))
        return None if raw is None else json.loads(raw)

    def save_shipped(self, name: str, doc: Mapping[str, Any]) -> None:
        """Keep the ship decision of ``name`` (written once; raises :class:`VersionConflictError` if shipped)."""
        body = json.dumps({"schema_version": 1, **doc}, sort_keys=True, allow_nan=False)
        if not self._redis.set(self._keys.shipped(name), body, nx=True):
            raise VersionConflictError(f"{name!r} was shipped already")

    def shipped(self, name: str) -> dict[str, Any] | None:
        """The ship decision :meth:`save_shipped` kept, or None."""
        raw = self._redis.get(self._keys.shipped(name))
        return None if raw is None else json.loads(raw)

    # -- observations ----------------------------------------------------------------------------------------
    def add_observations(self, name: str, rows: Iterable[Mapping[str, Any] | ObservationStat], *,
                         batch_id: str | None = None) -> int:
        """Validate a batch and add it atomically; returns the number of rows stored (see :meth:`add_batch`)."""
        return self.add_batch(name, rows, batch_id=batch_id).accepted

    def add_batch(self, name: str, rows: Iterable[Mapping[str, Any] | ObservationStat], *,
                  batch_id: str | None = None) -> BatchResult:
        """Validate a batch against the experiment and add it all or nothing, exactly once per ``batch_id``.

        Rows are raw dicts (see ``bayesopt.observations``) or :class:`ObservationStat`. A batch with any bad row
        is refused whole, with every problem named; so is one that would make a stored total non-finite (or,
        for a rate, leave [0, 1]). The check and the write are one Lua script, so a retried or concurrent batch
        cannot slip between them.

        Args:
            name: the experiment.
            rows: the batch.
            batch_id: the idempotency key; a batch whose key was stored in the last ``BATCH_KEY_TTL_S`` is not
                stored again (its first result is returned with ``duplicate=True``).

        Raises:
            ObservationRejectedError: an unknown version, arm or metric, or totals out of range.
            bayesopt.ObservationValidationError: a malformed row.
        """
        if batch_id is not None:
            check_batch_id(batch_id)
        rows = list(rows)
        stats = [r for r in rows if isinstance(r, ObservationStat)]
        raw = [r for r in rows if not isinstance(r, ObservationStat)]
        if raw:
            stats += parse_rows(raw)
        stats = merge(stats)
        rates = self._check_references(name, stats)
        args: list[str | float] = [BATCH_KEY_TTL_S, len(rows), repr(RATE_TOLERANCE)]
        for st in stats:
            prefix = Keys.stat_prefix(st.version, st.arm_id, st.metric, st.source)
            args += [prefix, repr(st.count), repr(st.sum), repr(st.sum_sq), "1" if st.metric in rates else "0"]
        keys = [self._keys.observations(name)] + ([self._keys.batch(name, batch_id)] if batch_id is not None else [])
        status, *reply = self._add_observations(keys=keys, args=args)
        if status == -1:
            field, reason = (r.decode() for r in reply)
            version, arm_id, metric, source, _ = field.split(FIELD_SEP)
            raise ObservationRejectedError([f"metric {metric!r} (version {version}, arm {arm_id!r}, source {source}): "
                                            f"{reason}; nothing in this batch was stored"])
        return BatchResult(accepted=int(reply[0]), duplicate=status == 0)

    def _check_references(self, name: str, stats: list[ObservationStat]) -> set[str]:
        """Refuse the batch unless every statistic names a stored version, its arm and a metric; returns the rates."""
        spec = self.load_spec(name)
        metrics = set(spec.metric_names)
        rates = {m.name for m in spec.metrics if m.kind == "rate"}
        versions = sorted({s.version for s in stats})
        raws = self._mget([self._keys.version(name, v) for v in versions]) if versions else []
        arms_of = {v: None if raw is None else {a["arm_id"] for a in json.loads(raw)["arms"]} for v, raw in zip(versions, raws, strict=True)}
        problems = []
        for s in stats:
            if not all(math.isfinite(x) for x in (s.count, s.sum, s.sum_sq)):
                problems.append(f"metric {s.metric!r} (version {s.version}, arm {s.arm_id!r}): the batch's merged "
                                f"totals are not finite (count {s.count:g}, sum {s.sum:g}, sum_sq {s.sum_sq:g})")
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
        return rates

    def observations(self, name: str) -> pd.DataFrame:
        """All statistics of the experiment, one row per (version, arm, metric, source); see ``STAT_COLUMNS``.

        Rolled-up windows included (their rows are kept in the archive, see :meth:`roll_up_observations`).
        """
        return observation_codec.decode(self._all_observation_fields(name))

    def observation_stats(self, name: str) -> list[ObservationStat]:
        """The same statistics as :meth:`observations`, as records (no pandas: for serving's report route)."""
        return observation_codec.decode_stats(self._all_observation_fields(name))

    def _all_observation_fields(self, name: str) -> dict[bytes, bytes | float]:
        self._require(name)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hgetall(self._keys.observations(name))
        pipe.hgetall(self._keys.observation_archive(name))
        live, archive = pipe.execute()
        return observation_codec.merged(archive, live)

    def recent_observations(self, name: str) -> RecentObservations:
        """The statistics not rolled up yet and the roll-up of the others, read in one step (a refit's read:
        its size stays flat as windows roll up)."""
        self._require(name)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hgetall(self._keys.observations(name))
        pipe.get(self._keys.observation_rollup(name))
        fields, rollup = pipe.execute()
        return RecentObservations(observation_codec.decode(fields), fields, rollup)

    def roll_up_observations(self, name: str, recent: RecentObservations, watermark: int, rollup: str) -> bool:
        """Move the online statistics of windows before ``watermark`` out of the observation hash into the
        archive and store ``rollup`` (JSON) as the roll-up of the archive, in one atomic step.

        Compare and set against ``recent`` (what :meth:`recent_observations` read): if the roll-up or any moved
        field changed since, nothing is written and False returned (the next refit tries again). No statistic
        is ever dropped: :meth:`observations` still returns every row.
        """
        args: list[bytes | str] = [recent.rollup or b"", rollup]
        for field, value in recent.fields.items():
            version, _, _, source, _ = field.decode().split(FIELD_SEP)
            if source == "online" and int(version) < watermark:
                args += [field, value]
        keys = [self._keys.observations(name), self._keys.observation_archive(name), self._keys.observation_rollup(name)]
        return bool(self._roll_up(keys=keys, args=args))

    # -- simulator observations ------------------------------------------------------------------------------
    def add_simulator_observations(self, name: str, rows: Iterable[Mapping[str, Any]], *,
                                   batch_id: str | None = None) -> BatchResult:
        """Validate simulator rows against the experiment's spec and add them all or nothing, once per ``batch_id``.

        Rows are keyed by (run, parameter values, metric), not by a served version (see
        ``bayesopt.simulator_observations``). A batch with any bad row is refused whole, with every problem named;
        the stored totals are checked and written by the same script as online batches (:meth:`add_batch`).
        """
        if batch_id is not None:
            check_batch_id(batch_id)
        rows = list(rows)
        spec = self.load_spec(name)
        stats = parse_simulator_rows(spec, rows)
        rates = {m.name for m in spec.metrics if m.kind == "rate"}
        args: list[str | float] = [BATCH_KEY_TTL_S, len(rows), repr(RATE_TOLERANCE)]
        for st in stats:
            args += [simulator_codec.field(st, ""), repr(st.count), repr(st.sum), repr(st.sum_sq),
                     "1" if st.metric in rates else "0"]
        keys = [self._keys.simulator_observations(name)]
        keys += [self._keys.batch(name, batch_id)] if batch_id is not None else []
        status, *reply = self._add_observations(keys=keys, args=args)
        if status == -1:
            field, reason = (r.decode() for r in reply)
            run, metric, values, _ = field.split(FIELD_SEP)
            raise ObservationRejectedError([f"metric {metric!r} (simulator run {run!r}, parameters {values}): "
                                            f"{reason}; nothing in this batch was stored"])
        return BatchResult(accepted=int(reply[0]), duplicate=status == 0)

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
