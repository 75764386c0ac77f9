"""All or nothing, exactly once: observation batches under idempotency keys, atomic launches, draft deletion,
and activation times that keep the history in activation order."""

from __future__ import annotations

import time

import pytest

from bayesopt import ObservationValidationError
from param_store import (
    ExperimentExistsError,
    ExperimentNotFoundError,
    ExperimentState,
    InvalidTransitionError,
    ObservationRejectedError,
    ParamStore,
)
from param_store.launch import launch_experiment
from tests.factories import make_distribution, make_rows, make_spec, spec_dict


def _running(store: ParamStore) -> None:
    launch_experiment(store, spec_dict("feed"))


def test_a_retried_batch_is_stored_once(store: ParamStore) -> None:
    _running(store)
    rows = make_rows(1, "control", "sessions", count=10, total=3.0)
    first = store.add_batch("feed", rows, batch_id="b-1")
    again = store.add_batch("feed", rows, batch_id="b-1")
    other = store.add_batch("feed", rows, batch_id="b-2")
    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again.accepted == first.accepted == 1
    assert store.observations("feed")["count"].sum() == 20.0


def test_a_bad_batch_id_is_refused_before_anything_is_stored(store: ParamStore) -> None:
    _running(store)
    with pytest.raises(ObservationValidationError, match="batch_id: must be 1 to 128 characters"):
        store.add_batch("feed", make_rows(1, "control", "sessions"), batch_id="has space")
    assert store.observations("feed").empty


@pytest.mark.parametrize("rows", [
    [{"version": 1, "arm_id": "control", "metric": "sessions", "count": 1e308, "sum": 1, "sum_sq": 1}] * 2,
    [{"version": 1, "arm_id": "control", "metric": "sessions", "value": 1e200}],  # sum_sq overflows
], ids=["counts-overflow-in-one-batch", "square-overflows"])
def test_a_batch_whose_totals_overflow_is_refused_whole(store: ParamStore, rows) -> None:
    _running(store)
    good = make_rows(1, "control", "applies", count=10, total=3.0)
    with pytest.raises(ObservationRejectedError, match="not finite"):
        store.add_batch("feed", [*good, *rows], batch_id="x")
    assert store.observations("feed").empty
    assert not store.add_batch("feed", good, batch_id="x").duplicate, "a refused batch leaves no idempotency key"


def test_a_batch_that_would_overflow_the_stored_totals_is_refused_and_writes_nothing(store: ParamStore) -> None:
    _running(store)
    huge = [{"version": 1, "arm_id": "control", "metric": "sessions", "count": 1e308, "sum": 1, "sum_sq": 1}]
    store.add_batch("feed", huge)
    before = store.observations("feed")
    with pytest.raises(ObservationRejectedError, match="the stored total would not be finite; nothing in this batch"):
        store.add_batch("feed", [*make_rows(1, "control", "applies"), *huge])
    assert store.observations("feed").equals(before)


def test_unknown_row_fields_are_refused(store: ParamStore) -> None:
    _running(store)
    row = {"version": 1, "arm_id": "control", "metric": "sessions", "coutn": 5, "sum": 1, "sum_sq": 1}
    with pytest.raises(ObservationValidationError, match="rows\\[0\\]: unknown field\\(s\\) 'coutn'"):
        store.add_batch("feed", [row])


def test_a_launch_stores_spec_and_version_one_running_or_nothing(store: ParamStore) -> None:
    first = launch_experiment(store, spec_dict("feed"))
    assert (store.state("feed"), store.current_version("feed"), first.version) == (ExperimentState.RUNNING, 1, 1)
    assert [v for v, _ in store.history("feed")] == [1] and store.list_experiments() == ["feed"]
    with pytest.raises(ExperimentExistsError):
        launch_experiment(store, spec_dict("feed"))
    assert store.current_version("feed") == 1 and store.load_version("feed", 1) == first


def test_a_draft_left_behind_can_be_deleted_and_the_name_launched_again(store: ParamStore) -> None:
    store.create_experiment(make_spec("feed"))  # what an interrupted launch of the old, non-atomic kind left
    with pytest.raises(ExperimentExistsError):
        launch_experiment(store, spec_dict("feed"))
    store.delete_draft("feed")
    assert store.list_experiments() == [] and not store.exists("feed")
    launch_experiment(store, spec_dict("feed"))
    assert store.current_version("feed") == 1


def test_only_drafts_can_be_deleted(store: ParamStore) -> None:
    _running(store)
    with pytest.raises(InvalidTransitionError, match="is running, not a draft"):
        store.delete_draft("feed")
    assert store.current_version("feed") == 1
    with pytest.raises(ExperimentNotFoundError):
        store.delete_draft("ghost")


def test_history_scores_strictly_increase_even_after_a_future_dated_activation(store: ParamStore) -> None:
    spec = make_spec("feed")
    store.create_experiment(spec)
    store.publish(make_distribution(spec, store.next_version("feed")))
    later = time.time() + 1000  # a backfill or a clock ahead of the server's
    v2 = make_distribution(spec, store.next_version("feed"))
    store.write_version(v2)
    store.activate("feed", v2.version, at=later)
    for _ in range(3):  # the server's clock is now behind the last score: each activation still sorts last
        store.publish(make_distribution(spec, store.next_version("feed")))
    history = store.history("feed")
    assert [v for v, _ in history] == [1, 2, 3, 4, 5]
    times = [t for _, t in history]
    assert all(a < b for a, b in zip(times, times[1:], strict=False)) and times[-1] > later
