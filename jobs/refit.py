"""The refit of one experiment: load -> fit -> sample -> validate -> publish, exactly once per period.

:func:`refit_experiment` is a plain function of picklable arguments (a URL or :class:`Settings`, names,
numbers, a :class:`~bayesopt.proposal.RefitPolicy` or a ``"module:Name"`` string naming one), so a process pool, Ray
or Dask runs it unchanged. It never raises: every outcome, failures included, comes back as a
:class:`~jobs.runs.RunRecord`, so one failing experiment never stops the others.

Exactly once per period, across any number of replicas:

1. a :class:`~param_store.Lease` (token lock with expiry, extended by a heartbeat) on (experiment, period)
   lets one process work on the period at a time; a crashed holder frees it after its ttl;
2. a "done" marker per (experiment, period), written after the run, makes later attempts skip;
3. publishing is idempotent: the published version carries the period and a fingerprint of (spec, data,
   period) in ``diagnostics["refit"]``, so a run that crashed between publishing and writing the marker is
   recognised from the current version itself.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bayesopt.errors import ValidationError
from bayesopt.proposal import Proposal
from bayesopt.spec import ExperimentSpec
from jobs.load import RefitInputs, load_inputs
from jobs.periods import Period, Schedule
from jobs.propose import PolicyRef, resolve_policy, run_policy
from jobs.publish import publish_proposal
from jobs.runs import Reason, RefitStop, RunRecord, RunStatus, worker_id
from jobs.settings import Settings
from jobs.validate import proposal_problems
from param_store import ExperimentState, Lease, ParamStore, make_client

#: Serving replicas re-read ``current`` on a version announcement or, failing that, on a short poll; starting
#: a new version this long after it is published lets every replica switch at the same moment.
DEFAULT_ACTIVATION_DELAY_S = 60.0
#: A crashed refit blocks its period for at most this long; a live one keeps extending it (see ``Lease``).
DEFAULT_LOCK_TTL_S = 300.0
#: Done markers outlive their period by far, so a late replica never redoes a period; they are a few bytes.
MIN_DONE_MARKER_TTL_S = 7 * 24 * 3600
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
    policy: PolicyRef | None = None,
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
            store.close()


class _Refit:
    """One run's state; each stage is a method."""

    def __init__(
        self, store: ParamStore, name: str, now: float, policy: PolicyRef | None, options: RefitOptions,
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
        frozen = self.store.frozen(self.name)
        if frozen is not None:
            return self.finish(RunStatus.SKIPPED, Reason.FROZEN, f"frozen ({frozen.get('kind')}) at version "
                               f"{frozen.get('version')}: {frozen.get('reason') or 'no reason given'}; unfreeze to refit")
        spec = self.store.load_spec(self.name)
        period = Schedule(spec.refit.cron, self.options.period_seconds).period(period_time)
        self.base["period"] = period.id
        try:
            self._check_not_done(period)
            with self.store.lease(self.name, f"refit:{period.id}", ttl_s=self.options.lock_ttl_s) as lease:
                if not lease.acquire():
                    raise RefitStop(RunStatus.SKIPPED, Reason.LOCKED, f"another process is refitting period {period.label()}")
                try:  # the record and the done marker are written while the lease is still held
                    self._check_not_done(period)  # it may have finished between our check and our lock
                    return self.finish(RunStatus.PUBLISHED, done=period, **self._locked_run(spec, period, lease))
                except RefitStop as stop:
                    return self._stopped(stop, period)
        except RefitStop as stop:
            return self._stopped(stop, period)

    def _stopped(self, stop: RefitStop, period: Period) -> RunRecord:
        """The record of a run that a stage stopped; kept and failed runs mark the period done unless told not to."""
        mark = stop.status is not RunStatus.SKIPPED and stop.mark_done
        return self.finish(stop.status, stop.reason, stop.message, problems=stop.problems,
                           done=period if mark else None, **stop.fields)

    def _check_not_done(self, period: Period) -> None:
        if not self.options.once_per_period or self.options.force:
            return
        done = self.store.refit_done(self.name, period.id)
        if done is not None:
            raise RefitStop(
                RunStatus.SKIPPED, Reason.DONE,
                f"period {period.label()} was refitted by {done.get('worker')}: {done.get('status')}",
                version=done.get("version"),
            )

    def _mark_done(self, period: Period, record: RunRecord, **overrides: Any) -> RunRecord:
        summary = {"status": record.status.value, "version": record.version, "worker": record.worker,
                   "reason": None if record.reason is None else record.reason.value, "fingerprint": record.fingerprint}
        ttl = int(max(MIN_DONE_MARKER_TTL_S, 3 * period.length))
        self.store.mark_refit_done(self.name, period.id, {**summary, **overrides}, ttl_s=ttl)
        return record

    def _locked_run(self, spec: ExperimentSpec, period: Period, lease: Lease) -> dict[str, Any]:
        """load -> fit and sample -> validate -> publish; returns the published version's record fields."""
        with self.stage("load") as st:
            inputs = load_inputs(self.store, self.name, spec=spec)
            st.detail = f"{len(inputs.stats)} rows, {inputs.observation_count:.0f} outcomes, {len(inputs.arm_values)} arms"
        fingerprint = _fingerprint(inputs.data_hash, period)
        self.base.update(
            fingerprint=fingerprint, observations=len(inputs.stats), observation_count=inputs.observation_count,
            previous_version=None if inputs.previous is None else inputs.previous.version,
        )
        self._check_changed(inputs, period, fingerprint)
        if inputs.problems:
            raise RefitStop(RunStatus.KEPT, Reason.INVALID_DATA, "stored observations are broken; fix them, then refit",
                            problems=tuple(inputs.problems))
        if inputs.table_rows < spec.refit.min_observations:
            raise RefitStop(RunStatus.KEPT, Reason.INSUFFICIENT_DATA,
                            f"{inputs.table_rows} observation rows, refit.min_observations is {spec.refit.min_observations}")
        proposal = self._propose(inputs, period)
        refit_doc = {"period": period.id, "period_start": period.label(), "fingerprint": fingerprint,
                     "data_hash": inputs.data_hash, "worker": worker_id()}
        valid_from = self.now + self.options.activation_delay_s
        with self.stage("validate") as st:
            st.detail = "failed" if (problems := _problems(inputs, proposal)) else "ok"
        if problems:
            raise RefitStop(RunStatus.KEPT, Reason.INVALID_DISTRIBUTION, "the proposal failed validation", problems=tuple(problems))
        with self.stage("publish") as st:
            dist = publish_proposal(self.store, inputs, proposal, lease_held=lease.still_held(), created_at=self.now,
                                    valid_from=valid_from, refit_doc=refit_doc)
            st.detail = f"version {dist.version}, valid from {time.strftime('%H:%M:%S', time.gmtime(dist.valid_from))} UTC"
        return {"version": dist.version, "valid_from": dist.valid_from}

    def _check_changed(self, inputs: RefitInputs, period: Period, fingerprint: str) -> None:
        """Stop when a later period published already, or when this period's refit would repeat the last one."""
        last = inputs.previous_refit
        last_period = last.get("period")
        if isinstance(last_period, int) and last_period > period.id:
            raise RefitStop(RunStatus.SKIPPED, Reason.SUPERSEDED, f"version {inputs.previous.version} is from a later period")
        if self.options.force:
            return
        if last.get("fingerprint") == fingerprint:
            reason, message = Reason.UNCHANGED, "spec, data and period are unchanged since version"
        elif self.options.once_per_period and last_period == period.id:
            reason, message = Reason.DONE, "this period was published by version"
        else:
            return
        if self.options.once_per_period:  # the publishing run died before its marker: write it now
            record = RunRecord(experiment=self.name, status=RunStatus.SKIPPED, reason=reason, started_at=self.started,
                               ended_at=time.time(), version=inputs.previous.version, **self.base)
            self._mark_done(period, record, status=RunStatus.PUBLISHED.value, reason=None, worker=last.get("worker"))
        raise RefitStop(RunStatus.SKIPPED, reason, f"{message} {inputs.previous.version}", version=inputs.previous.version)

    def _propose(self, inputs: RefitInputs, period: Period) -> Proposal:
        with self.stage("import", "policy code"):  # seconds on a worker's first refit (torch), none after
            policy = resolve_policy(self.policy)
        with self.stage("policy", "fit and sample") as st:
            try:
                proposal = run_policy(policy, inputs, seed=_seed(inputs.spec.policy.seed, period), now=self.now)
            except RefitStop as stop:
                st.detail = "failed" if stop.reason is Reason.FIT_FAILED else "not enough data"
                raise
        for key, seconds in proposal.timings.items():
            self.timings[f"policy.{key}"] = seconds
        for stage in ("fit", "sample"):
            if stage in proposal.timings:
                self.progress(f"  {stage}", proposal.timings[stage], "")
        self.base["num_observations"] = proposal.num_observations
        return proposal


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



def _problems(inputs: RefitInputs, proposal: Proposal) -> list[str]:
    """Why ``proposal`` may not be published, checked on the record it would become (``path: message``)."""
    expected = 1 if inputs.previous is None else inputs.previous.version + 1  # publish stamps the real number
    try:
        draft = proposal.to_distribution(inputs.spec, version=expected)
    except ValidationError as exc:
        return list(exc.problems)
    return proposal_problems(inputs.spec, draft, inputs.previous)
