"""The status record of one refit run: what happened, why, and how long each stage took.

Runs that did work (``published``, ``kept``, ``failed``) are stored with ``ParamStore.record_run`` and read back
by ``bayesopt status`` and the HTTP status endpoint. ``skipped`` runs (another replica holds the period, the
period is done, the experiment is not running) are returned to the caller but not stored: every replica would
otherwise log one per experiment per period.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from jobs.errors import JobsError

SCHEMA_VERSION = 1


class RunStatus(StrEnum):
    PUBLISHED = "published"  # a new version is current
    KEPT = "kept"  # the refit ran and chose to keep the current version; ``reason`` says why
    SKIPPED = "skipped"  # nothing to do here; ``reason`` says why
    FAILED = "failed"  # an unexpected error (store unreachable, a bug); the current version is untouched


class Reason(StrEnum):
    """Why a run did not publish."""

    NOT_RUNNING = "not_running"  # paused, ended or draft
    FROZEN = "frozen"  # an analyst froze or pinned the current version (param_store.decisions)
    LOCKED = "locked"  # another process is refitting this period
    DONE = "done"  # this period was refitted already
    UNCHANGED = "unchanged"  # same spec, same data, same period as the last refit
    SUPERSEDED = "superseded"  # a refit of a later period published first
    INSUFFICIENT_DATA = "insufficient_data"
    INVALID_DATA = "invalid_data"  # stored statistics are broken (NaN, negative counts)
    FIT_FAILED = "fit_failed"
    INVALID_DISTRIBUTION = "invalid_distribution"  # the proposal failed validation
    LOCK_LOST = "lock_lost"  # the lock expired before publishing (the run was too slow for its ttl)
    ERROR = "error"


#: Runs with these statuses are written to the store.
RECORDED = frozenset({RunStatus.PUBLISHED, RunStatus.KEPT, RunStatus.FAILED})


def worker_id() -> str:
    """``host:pid`` of the process doing the run."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One refit run. Times are epoch seconds; ``timings`` maps stage name to seconds.

    ``observations`` is the number of statistic rows loaded (one per window, arm, metric and source),
    ``observation_count`` the number of outcomes they summarise, ``num_observations`` what the policy reports
    having used.
    """

    experiment: str
    status: RunStatus
    started_at: float
    ended_at: float
    period: int | None = None
    reason: Reason | None = None
    message: str = ""
    problems: tuple[str, ...] = ()
    version: int | None = None
    previous_version: int | None = None
    valid_from: float | None = None
    observations: int = 0
    observation_count: float = 0.0
    num_observations: int | None = None
    fingerprint: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = field(default_factory=worker_id)

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at

    @property
    def recorded(self) -> bool:
        return self.status in RECORDED

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["status"] = self.status.value
        doc["reason"] = None if self.reason is None else self.reason.value
        doc["problems"] = list(self.problems)
        doc["duration_s"] = round(self.duration_s, 6)
        doc["schema_version"] = SCHEMA_VERSION
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RunRecord:
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        known["status"] = RunStatus(known["status"])
        known["reason"] = None if known.get("reason") is None else Reason(known["reason"])
        known["problems"] = tuple(known.get("problems", ()))
        return cls(**known)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        what = f"version {self.version}" if self.status is RunStatus.PUBLISHED else (self.reason or "")
        text = f"{self.experiment}: {self.status.value} {what} in {self.duration_s:.2f} s"
        if self.message:
            text += f" ({self.message})"
        return text


def outcome_table(records: list[RunRecord]) -> str:
    """A fixed-width table of runs (experiment, outcome, seconds, worker) with a count per outcome below it."""
    rows = [("experiment", "outcome", "seconds", "worker")]
    for r in records:
        outcome = f"{r.status.value} " + (f"v{r.version}" if r.status is RunStatus.PUBLISHED else (r.reason or ""))
        rows.append((r.experiment, outcome.strip(), f"{r.duration_s:.2f}", r.worker))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    lines.append(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no running experiments")
    return "\n".join(lines)


class RefitStop(JobsError):
    """Raised by a refit stage to end the run with a record: the one way a stage says "stop here".

    Attributes:
        status, reason, message, problems: the run record's fields.
        mark_done: whether the period counts as done (no replica retries it); False for a lost lock.
        fields: other run-record fields (``version``, ...).
    """

    def __init__(
        self, status: RunStatus, reason: Reason, message: str, *, problems: tuple[str, ...] = (),
        mark_done: bool = True, **fields: Any,
    ) -> None:
        super().__init__(f"{status.value} ({reason.value}): {message}")
        self.status, self.reason, self.message = status, reason, message
        self.problems, self.mark_done, self.fields = tuple(problems), mark_done, fields
