"""The refit of one experiment: load -> fit -> sample -> validate -> publish, exactly once per period.

:func:`refit_experiment` is a plain function of picklable arguments (a URL or :class:`Settings`, names,
numbers, a policy given as a module-level function or a ``"module:function"`` string), so a process pool, Ray
or Dask runs it unchanged. It never raises: every outcome, failures included, comes back as a
:class:`~jobs.runs.RunRecord`, so one failing experiment never stops the others.

Exactly once per period, across any number of replicas:

1. a :class:`~jobs.lease.Lease` (token lock with expiry, extended by a heartbeat) on (experiment, period)
   lets one process work on the period at a time; a crashed holder frees it after its ttl;
2. a "done" marker per (experiment, period), written after the run, makes later attempts skip;
3. publishing is idempotent: the published version carries the period and a fingerprint of (spec, data,
   period) in ``diagnostics["refit"]``, so a run that crashed between publishing and writing the marker is
   recognised from the current version itself.
"""

from __future__ import annotations

import hashlib
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bayesopt.errors import InsufficientDataError, ValidationError
from jobs.lease import Lease
from jobs.load import RefitInputs, load_inputs
from jobs.periods import Period, Schedule
from jobs.runs import Reason, RunRecord, RunStatus, worker_id
from jobs.settings import Settings
from jobs.validate import proposal_problems
from param_store import ExperimentState, ParamStore, make_client

#: Serving replicas re-read ``current`` on a version announcement or, failing that, on a short poll; starting
#: a new version this long after it is published lets every replica switch at the same moment.
DEFAULT_ACTIVATION_DELAY_S = 60.0
#: A crashed refit blocks its period for at most this long; a live one keeps extending it (see ``Lease``).
DEFAULT_LOCK_TTL_S = 300.0
#: Done markers outlive their period by far, so a late replica never redoes a period; they are a few bytes.
MIN_DONE_MARKER_TTL_S = 7 * 24 * 3600
DEFAULT_POLICY = "bayesopt.policy:propose"

#: ``policy(spec, table, *, version, previous, seed, warm_start, now) -> Proposal``, as ``bayesopt.policy.propose``.
PolicyFn = Callable[..., Any]
#: ``progress(stage, seconds, detail)``: ``seconds`` is None when a stage starts, its duration when it ends.
Progress = Callable[[str, float | None, str], None]


@dataclass(frozen=True, kw_only=True)
class RefitOptions:
    """How a refit runs (all picklable).

    Attributes:
        period_seconds: fixed-length periods instead of the spec's cron (accelerated runs and tests).
        activation_delay_s: ``valid_from = now + activation_delay_s`` for the new version.
        lock_ttl_s: expiry of the per-period lock.
        once_per_period: skip a period that was refitted already (the scheduler); False refits again when the
            data changed since (a manual ``bayesopt refit``).
        force: refit even when spec, data and period are unchanged.
    """

    period_seconds: int | None = None
    activation_delay_s: float = DEFAULT_ACTIVATION_DELAY_S
    lock_ttl_s: float = DEFAULT_LOCK_TTL_S
    once_per_period: bool = True
    force: bool = False


def resolve_policy(policy: PolicyFn | str | None) -> PolicyFn:
    """A callable policy from a callable, a ``"module:function"`` string, or None (``bayesopt.policy.propose``)."""
    if callable(policy):
        return policy
    module_name, _, attr = (policy or DEFAULT_POLICY).partition(":")
    if not attr:
        raise ValueError(f"A policy string should look like 'package.module:function', got {policy!r}.")
    return getattr(importlib.import_module(module_name), attr)


def open_store(target: Settings | str | ParamStore, namespace: str | None = None) -> ParamStore:
    """A store for a :class:`Settings`, a Redis URL or an open store (``namespace`` None: the settings' own)."""
    if isinstance(target, ParamStore):
        return target
    if isinstance(target, Settings):
        return ParamStore(make_client(target.store_url()), namespace=namespace or target.namespace)
    return ParamStore(make_client(target), namespace=namespace or Settings().namespace)


def refit_experiment(
    target: Settings | str,
    namespace: str | None,
    name: str,
    *,
    now: float | None = None,
    period_time: float | None = None,
    policy: PolicyFn | str | None = None,
    options: RefitOptions | None = None,
    progress: Progress | None = None,
) -> RunRecord:
    """Refit experiment ``name`` for the period containing ``period_time`` (default ``now``) and record the run.

    ``now`` (default: the clock) dates the new version. A scheduler passes the moment a run was due as
    ``period_time``, so a run that waited for a free worker still counts for the period it was due in.
    Never raises; see :class:`~jobs.runs.RunRecord` for the outcomes.
    """
    started = time.time()
    now = started if now is None else now
    store = open_store(target, namespace)
    try:
        run = _Refit(store, name, now, policy, options or RefitOptions(), progress)
        return run.run(now if period_time is None else period_time)
    except Exception as exc:  # the store went away, a bug: report, never take the caller down
        record = RunRecord(
            experiment=name, status=RunStatus.FAILED, reason=Reason.ERROR, started_at=started, ended_at=time.time(),
            message=f"{type(exc).__name__}: {exc}",
        )
        try:
            store.record_run(name, record.to_dict())
        except Exception:  # noqa: BLE001 - the store itself may be what failed
            pass
        return record
    finally:
        if not isinstance(target, ParamStore):
            store.redis.close()


class _Refit:
    """One run's state; each stage is a method."""

    def __init__(
        self, store: ParamStore, name: str, now: float, policy: PolicyFn | str | None, options: RefitOptions,
        progress: Progress | None,
    ) -> None:
        self.store, self.name, self.now, self.options = store, name, now, options
        self.policy = policy
        self.progress = progress or (lambda stage, seconds, detail: None)
        self.started = time.time()
        self.cpu_started = time.process_time()
        self.timings: dict[str, float] = {}
        self.base: dict[str, Any] = {}

    def finish(
        self, status: RunStatus, reason: Reason | None = None, message: str = "", *, done: Period | None = None,
        **fields: Any,
    ) -> RunRecord:
        """Build the run's record; mark ``done`` first (a crash in between leaves no second record), then store it."""
        self.timings["total"] = time.time() - self.started
        self.timings["cpu"] = time.process_time() - self.cpu_started  # of the whole process, all its threads
        record = RunRecord(
            experiment=self.name, status=status, reason=reason, message=message, started_at=self.started,
            ended_at=time.time(), timings=dict(self.timings), **{**self.base, **fields},
        )
        if done is not None:
            self._mark_done(done, record)
        if record.recorded:
            self.store.record_run(self.name, record.to_dict())
        return record

    def stage(self, name: str, detail: str = "") -> _Stage:
        return _Stage(self, name, detail)

    def run(self, period_time: float) -> RunRecord:
        state = self.store.state(self.name)
        if state is not ExperimentState.RUNNING:
            return self.finish(RunStatus.SKIPPED, Reason.NOT_RUNNING, f"experiment is {state.value}")
        spec = self.store.load_spec(self.name)
        period = Schedule(spec.refit.cron, self.options.period_seconds).period(period_time)
        self.base["period"] = period.id
        if skipped := self._done_already(period):
            return skipped
        lease = Lease(self.store.redis, self.store.keys.lock(self.name, f"refit:{period.id}"), ttl_s=self.options.lock_ttl_s)
        if not lease.acquire():
            return self.finish(RunStatus.SKIPPED, Reason.LOCKED, f"another process is refitting period {period.label()}")
        try:
            if skipped := self._done_already(period):  # it may have finished between our check and our lock
                return skipped
            return self._locked_run(spec, period, lease)
        finally:
            lease.release()

    def _done_already(self, period: Period) -> RunRecord | None:
        if not self.options.once_per_period or self.options.force:
            return None
        done = self.store.refit_done(self.name, period.id)
        if done is None:
            return None
        return self.finish(
            RunStatus.SKIPPED, Reason.DONE, f"period {period.label()} was refitted by {done.get('worker')}: {done.get('status')}",
            version=done.get("version"),
        )

    def _mark_done(self, period: Period, record: RunRecord, **overrides: Any) -> RunRecord:
        summary = {"status": record.status.value, "version": record.version, "worker": record.worker,
                   "reason": None if record.reason is None else record.reason.value, "fingerprint": record.fingerprint}
        ttl = int(max(MIN_DONE_MARKER_TTL_S, 3 * period.length))
        self.store.mark_refit_done(self.name, period.id, {**summary, **overrides}, ttl_s=ttl)
        return record

    def _locked_run(self, spec: Any, period: Period, lease: Lease) -> RunRecord:
        with self.stage("load") as st:
            inputs = load_inputs(self.store, self.name, spec=spec)
            st.detail = f"{len(inputs.stats)} rows, {inputs.observation_count:.0f} outcomes, {len(inputs.arm_values)} arms"
        fingerprint = _fingerprint(inputs.data_hash, period)
        self.base.update(
            fingerprint=fingerprint, observations=len(inputs.stats), observation_count=inputs.observation_count,
            previous_version=None if inputs.previous is None else inputs.previous.version,
        )
        if skipped := self._idempotent_skip(inputs, period, fingerprint):
            return skipped
        if inputs.problems:
            return self.finish(
                RunStatus.KEPT, Reason.INVALID_DATA, "stored observations are broken; fix them, then refit",
                problems=tuple(inputs.problems), done=period,
            )
        if len(inputs.table) < spec.refit.min_observations:
            return self.finish(
                RunStatus.KEPT, Reason.INSUFFICIENT_DATA,
                f"{len(inputs.table)} observation rows, refit.min_observations is {spec.refit.min_observations}",
                done=period,
            )
        outcome = self._fit(inputs, period)
        if isinstance(outcome, RunRecord):
            return outcome
        dist = self._validate(inputs, period, outcome, fingerprint)
        if isinstance(dist, RunRecord):
            return dist
        return self._publish(inputs, period, lease, outcome, dist)

    def _idempotent_skip(self, inputs: RefitInputs, period: Period, fingerprint: str) -> RunRecord | None:
        last = inputs.previous_refit
        last_period = last.get("period")
        if isinstance(last_period, int) and last_period > period.id:
            return self.finish(RunStatus.SKIPPED, Reason.SUPERSEDED, f"version {inputs.previous.version} is from a later period")
        if self.options.force:
            return None
        if last.get("fingerprint") == fingerprint:
            reason, message = Reason.UNCHANGED, "spec, data and period are unchanged since version"
        elif self.options.once_per_period and last_period == period.id:
            reason, message = Reason.DONE, "this period was published by version"
        else:
            return None
        record = self.finish(RunStatus.SKIPPED, reason, f"{message} {inputs.previous.version}", version=inputs.previous.version)
        if self.options.once_per_period:  # the publishing run died before its marker: write it now
            self._mark_done(period, record, status=RunStatus.PUBLISHED.value, reason=None, worker=last.get("worker"))
        return record

    def _fit(self, inputs: RefitInputs, period: Period) -> Any:
        spec = inputs.spec
        previous = inputs.previous
        with self.stage("import", "policy code"):  # seconds on a worker's first refit (torch), none after
            policy = resolve_policy(self.policy)
        with self.stage("policy", "fit and sample") as st:
            try:
                proposal = policy(
                    spec, inputs.table, version=(previous.version if previous else 0) + 1, previous=previous,
                    seed=_seed(spec.policy.seed, period), warm_start=inputs.warm_start, now=self.now,
                )
            except InsufficientDataError as exc:
                st.detail = "not enough data"
                return self.finish(RunStatus.KEPT, Reason.INSUFFICIENT_DATA, str(exc), done=period)
            except Exception as exc:  # any policy failure keeps the current version
                st.detail = "failed"
                return self.finish(RunStatus.KEPT, Reason.FIT_FAILED, f"{type(exc).__name__}: {exc}", done=period)
        policy_timings = {str(k): float(v) for k, v in (getattr(proposal, "timings", None) or {}).items()}
        for key, seconds in policy_timings.items():
            self.timings[f"policy.{key}"] = seconds
        for stage in ("fit", "sample"):
            if stage in policy_timings:
                self.progress(f"  {stage}", policy_timings[stage], "")
        self.base["num_observations"] = getattr(proposal, "num_observations", None)
        return proposal

    def _validate(self, inputs: RefitInputs, period: Period, proposal: Any, fingerprint: str) -> Any:
        with self.stage("validate") as st:
            refit_doc = {"period": period.id, "period_start": period.label(), "fingerprint": fingerprint,
                         "data_hash": inputs.data_hash, "worker": worker_id()}
            try:
                dist = proposal.distribution
                dist = dist.replace(
                    diagnostics={**dist.diagnostics, "refit": refit_doc},
                    valid_from=self.now + self.options.activation_delay_s,
                )
                problems = proposal_problems(inputs.spec, dist, inputs.previous)
            except (ValidationError, AttributeError, TypeError) as exc:
                problems = list(getattr(exc, "problems", None) or [f"{type(exc).__name__}: {exc}"])
            st.detail = f"{len(problems)} problems" if problems else "ok"
        if problems:
            return self.finish(RunStatus.KEPT, Reason.INVALID_DISTRIBUTION, "the proposal failed validation",
                               problems=tuple(problems), done=period)
        return dist

    def _publish(self, inputs: RefitInputs, period: Period, lease: Lease, proposal: Any, dist: Any) -> RunRecord:
        with self.stage("publish") as st:
            if not lease.still_held():
                st.detail = "lock lost"
                return self.finish(RunStatus.KEPT, Reason.LOCK_LOST, "the period lock expired before publishing")
            current = self.store.current_version(self.name)
            expected = None if inputs.previous is None else inputs.previous.version
            if current != expected:
                st.detail = "superseded"
                return self.finish(RunStatus.KEPT, Reason.SUPERSEDED, f"version {current} was published while this refit ran",
                                   done=period)
            version = self.store.next_version(self.name)
            if version != dist.version:
                dist = dist.replace(version=version)
            self.store.publish(dist)
            state = getattr(proposal, "model_state", None)
            if state:
                self.store.save_model_state(self.name, version, state)
            st.detail = f"version {version}, valid from {time.strftime('%H:%M:%S', time.gmtime(dist.valid_from))} UTC"
        return self.finish(RunStatus.PUBLISHED, version=version, valid_from=dist.valid_from, done=period)


class _Stage:
    """Times a stage into ``run.timings`` and reports its start and end to ``run.progress``."""

    def __init__(self, run: _Refit, name: str, detail: str) -> None:
        self.run, self.name, self.detail = run, name, detail

    def __enter__(self) -> _Stage:
        self.t0 = time.perf_counter()
        self.run.progress(self.name, None, self.detail)
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self.t0
        self.run.timings[self.name] = seconds
        self.run.progress(self.name, seconds, self.detail)


def _fingerprint(data_hash: str, period: Period) -> str:
    return hashlib.sha256(f"{data_hash}|{period.id}".encode()).hexdigest()[:16]


def _seed(base: int, period: Period) -> int:
    """A seed per (spec seed, period): reruns of a period draw the same, successive periods differ."""
    return (base * 1_000_003 + period.id) % (2**31 - 1)

