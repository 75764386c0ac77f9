"""The experiment lifecycle: draft -> running <-> paused -> ended, with a transition table."""

from __future__ import annotations

from enum import StrEnum

from param_store.errors import InvalidTransitionError


class ExperimentState(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    ENDED = "ended"


ALLOWED_TRANSITIONS: dict[ExperimentState, frozenset[ExperimentState]] = {
    ExperimentState.DRAFT: frozenset({ExperimentState.RUNNING, ExperimentState.ENDED}),
    ExperimentState.RUNNING: frozenset({ExperimentState.PAUSED, ExperimentState.ENDED}),
    ExperimentState.PAUSED: frozenset({ExperimentState.RUNNING, ExperimentState.ENDED}),
    ExperimentState.ENDED: frozenset(),
}


def check_transition(name: str, current: ExperimentState, target: ExperimentState) -> None:
    """Raise :class:`InvalidTransitionError` naming the allowed targets unless ``current -> target`` is allowed."""
    if target not in ALLOWED_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[current])) or "none (ended is final)"
        raise InvalidTransitionError(
            f"experiment {name!r} is {current.value}; it cannot become {target.value} (allowed: {allowed})"
        )
