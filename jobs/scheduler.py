"""The refit scheduler: one APScheduler 3.x job per running experiment, firing on its spec's cron.

Run one per replica, as many replicas as you like. APScheduler 3.x cannot share a job store between
processes, so each replica schedules every experiment itself and the refit is made exactly-once per period
by the refit (lock, done marker, idempotent publish; see :mod:`jobs.refit`), not by the scheduler.

Job settings, on purpose:

- ``coalesce=True``: after the scheduler was down or stalled across several fire times, run once, not once per
  missed time. Every run refits on all data so far; a burst of back-to-back refits would only publish versions
  that nobody is served long enough to learn from.
- ``misfire_grace_time`` = half the period: a run that starts late (a restart, a busy host) still refits its
  period if more than half of it is left to serve; later than that, the next period's run is nearer and
  better. It is kept below the period length so that the period containing the start time is the period the
  run was scheduled for.
- ``max_instances=1``: a refit that outlasts its period does not overlap the next one in this replica; the
  next period's run is dropped (and logged), never queued behind it.

A periodic sync job picks up newly launched experiments, drops paused and ended ones and follows cron changes.
When an experiment is added, one run fires immediately: it catches up a period that every replica missed
(all down at the top of the hour) and is a cheap no-op (``done``) otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from jobs.executor import RefitExecutor, result_or_failure
from jobs.metrics import SchedulerMetrics
from jobs.periods import Schedule
from jobs.pool import RefitPool
from jobs.propose import PolicyRef
from jobs.refit import RefitOptions, open_store
from jobs.runs import Reason, RunRecord, RunStatus
from jobs.settings import Settings
from param_store import ExperimentNotFoundError, ExperimentState

log = logging.getLogger(__name__)

#: How often the set of running experiments is re-read (launches, pauses, cron changes).
DEFAULT_SYNC_SECONDS = 60
#: Share of a period after its start during which a late run still goes ahead (see the module docstring).
MISFIRE_GRACE_SHARE = 0.5
#: Threads that hand refits to the process pool and wait for them: cheap, and more of them than workers, so
#: that a queue of due refits waits in the process pool (bounded) rather than in APScheduler's misfire clock.
JOB_THREADS = 64


def misfire_grace_seconds(schedule: Schedule, now: float) -> int:
    """Half the length of the period containing ``now`` (at least one second)."""
    return max(1, int(MISFIRE_GRACE_SHARE * schedule.period(now).length))


class RefitScheduler:
    """Schedules and runs the refits of every running experiment of one store namespace.

    Args:
        target: settings or a Redis URL.
        namespace: the store namespace (None: the settings' own).
        pool: where refits run, any :class:`~jobs.executor.RefitExecutor` (default: a fresh :class:`RefitPool`
            of ``max_workers``).
        policy: passed to every refit (a callable must be importable by module and name, to be pickled).
        options: passed to every refit; ``options.period_seconds`` also replaces every cron (accelerated runs).
        sync_seconds: how often to re-read the experiments.
        on_record: called with every run's record (in a scheduler thread).
        metrics: fed every run record and scheduler event (see :mod:`jobs.metrics`).
    """

    def __init__(
        self,
        target: Settings | str,
        namespace: str | None = None,
        *,
        pool: RefitExecutor | None = None,
        max_workers: int | None = None,
        policy: PolicyRef | None = None,
        options: RefitOptions | None = None,
        sync_seconds: float = DEFAULT_SYNC_SECONDS,
        on_record: Callable[[RunRecord], None] | None = None,
        metrics: SchedulerMetrics | None = None,
    ) -> None:
        if isinstance(target, Settings):
            target, namespace = target.store_url(), namespace or target.namespace
        self.url, self.namespace = target, namespace
        self.store = open_store(target, namespace)
        self.pool = pool or RefitPool(max_workers)
        self.policy = policy
        self.options = replace(options or RefitOptions(), once_per_period=True, force=False)
        self.sync_seconds = sync_seconds
        self.on_record = on_record
        self.metrics = metrics
        self._schedules: dict[str, Schedule] = {}
        self._lock = threading.Lock()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(JOB_THREADS)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self.scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self, *, warm_up: bool = True) -> None:
        """Start the workers (``warm_up``), schedule every running experiment and begin firing."""
        if warm_up:
            self.pool.warm_up()
        self.scheduler.start()
        self.sync()
        self.scheduler.add_job(
            self.sync, IntervalTrigger(seconds=self.sync_seconds, timezone=UTC), id="sync",
            misfire_grace_time=max(1, int(self.sync_seconds)),
        )

    def shutdown(self, *, wait: bool = True) -> None:
        self.scheduler.shutdown(wait=wait)
        self.pool.shutdown(wait=wait)
        self.store.close()

    # -- jobs ------------------------------------------------------------------------------------------------
    def scheduled(self) -> dict[str, Schedule]:
        """The experiments this replica currently schedules."""
        with self._lock:
            return dict(self._schedules)

    def sync(self) -> None:
        """Match the jobs to the running experiments and their schedules."""
        now = time.time()
        wanted: dict[str, Schedule] = {}
        for name in self.store.list_experiments():
            try:
                if self.store.state(name) is ExperimentState.RUNNING:
                    spec = self.store.load_spec(name)
                    wanted[name] = Schedule(spec.refit.cron, self.options.period_seconds)
            except (ExperimentNotFoundError, ValueError) as exc:  # removed meanwhile, or a cron APScheduler refuses
                log.warning("not scheduling %s: %s", name, exc)
        with self._lock:
            for name in set(self._schedules) - set(wanted):
                self._remove(name)
                log.info("unscheduled %s (no longer running)", name)
            for name, schedule in wanted.items():
                if self._schedules.get(name) != schedule:
                    self._add(name, schedule, now, catch_up=name not in self._schedules)

    def _add(self, name: str, schedule: Schedule, now: float, *, catch_up: bool) -> None:
        grace = misfire_grace_seconds(schedule, now)
        self.scheduler.add_job(
            self._refit, schedule.trigger(), args=[name], id=f"refit:{name}", name=f"refit {name}",
            replace_existing=True, misfire_grace_time=grace,
        )
        if catch_up:  # a one-off job: giving the main job an earlier first run would shift an interval trigger
            self.scheduler.add_job(
                self._refit, DateTrigger(datetime.fromtimestamp(now, UTC)), args=[name], id=f"retry:{name}",
                replace_existing=True, misfire_grace_time=grace,
            )
        self._schedules[name] = schedule
        log.info("scheduled %s (%s)", name, f"every {schedule.period_seconds} s" if schedule.period_seconds else schedule.cron)

    def _remove(self, name: str) -> None:
        for job_id in (f"refit:{name}", f"retry:{name}"):
            if self.scheduler.get_job(job_id) is not None:
                self.scheduler.remove_job(job_id)
        self._schedules.pop(name, None)

    def _refit(self, name: str) -> RunRecord:
        started = time.time()  # within the misfire grace of the fire time: in the period this run is due for
        future = self.pool.submit(
            self.url, self.namespace, name, period_time=started, policy=self.policy, options=self.options
        )
        record = result_or_failure(name, future, started)
        if record.status is RunStatus.FAILED and record.period is None:
            self._record_quietly(name, record)  # the worker died before it could record anything
        log.log(logging.WARNING if record.status is RunStatus.FAILED else logging.INFO, "%s", record.summary())
        if record.reason is Reason.LOCKED:
            self._retry_after_lock(name, record)
        if self.metrics is not None:
            self.metrics.observe(record)
        if self.on_record is not None:
            self.on_record(record)
        return record

    def _retry_after_lock(self, name: str, record: RunRecord) -> None:
        """Another replica holds the period: look again once its lock could have expired, if still in the period.

        Usually that run finds the period ``done``; if the holder died, it does the period's refit.
        """
        schedule = self._schedules.get(name)
        if schedule is None or record.period is None:
            return
        when = time.time() + self.options.lock_ttl_s + 1.0
        if when >= schedule.period(record.period).end:
            return
        self.scheduler.add_job(
            self._refit, DateTrigger(datetime.fromtimestamp(when, UTC)), args=[name], id=f"retry:{name}",
            replace_existing=True, misfire_grace_time=max(1, int(schedule.period(record.period).length / 4)),
        )

    def _record_quietly(self, name: str, record: RunRecord) -> None:
        try:
            self.store.record_run(name, record.to_dict())
        except Exception as exc:  # noqa: BLE001 - logging is all that is left to do
            log.warning("could not record the failed run of %s: %s", name, exc)

    def _on_event(self, event: JobEvent) -> None:
        if self.metrics is not None:
            kinds = {EVENT_JOB_MAX_INSTANCES: "max_instances", EVENT_JOB_MISSED: "missed"}
            self.metrics.count_event(kinds.get(event.code, "error"))
        if event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("job %s skipped a run: its previous run is still going (max_instances=1)", event.job_id)
        elif event.code == EVENT_JOB_MISSED:
            late = timedelta(seconds=time.time() - event.scheduled_run_time.timestamp())
            log.warning("job %s missed its run at %s (late by %s): past its misfire grace time", event.job_id,
                        event.scheduled_run_time.isoformat(), late)
        else:
            log.error("job %s raised %r", event.job_id, event.exception)
