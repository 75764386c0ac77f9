"""The Redis store against a real server: specs, lifecycle, versions, rollback, observations, keys."""

from __future__ import annotations

import math
import threading

import pandas as pd
import pytest
import redis

from bayesopt import ObservationValidationError
from param_store import (
    ExperimentExistsError,
    ExperimentNotFoundError,
    ExperimentState,
    InvalidTransitionError,
    Keys,
    ObservationRejectedError,
    ParamStore,
    VersionConflictError,
    VersionNotFoundError,
    VersionWatcher,
)
from tests.factories import make_distribution, make_rows, make_spec


def _launched(store: ParamStore, name: str = "feed"):
    spec = make_spec(name)
    store.create_experiment(spec)
    dist = make_distribution(spec, store.next_version(name))
    store.publish(dist)
    return spec, dist


def test_spec_round_trip_and_listing(store: ParamStore) -> None:
    spec = make_spec("a")
    store.create_experiment(spec)
    store.create_experiment(make_spec("b"))
    assert store.load_spec("a") == spec
    assert store.list_experiments() == ["a", "b"]
    with pytest.raises(ExperimentExistsError, match="'a' exists already"):
        store.create_experiment(spec)
    with pytest.raises(ExperimentNotFoundError, match="no experiment named 'zzz'"):
        store.load_spec("zzz")


def test_distribution_round_trip_through_redis(store: ParamStore) -> None:
    _, dist = _launched(store)
    assert store.current("feed") == dist
    assert store.load_version("feed", 1).to_json() == dist.to_json()


def test_every_key_carries_the_experiment_hash_tag(store: ParamStore, raw_redis: redis.Redis, raw_keys: Keys) -> None:
    _launched(store, "tagged")
    store.add_observations("tagged", make_rows(1, "control", "sessions"))
    store.record_run("tagged", {"ok": True})
    keys = [k.decode() for k in raw_redis.scan_iter(match=f"{store.namespace}:*")]
    per_experiment = [k for k in keys if k != raw_keys.experiments]
    assert len(per_experiment) >= 6 and all("{tagged}" in k for k in per_experiment), keys


def test_lifecycle_transitions_name_the_allowed_ones(store: ParamStore) -> None:
    store.create_experiment(make_spec())
    assert store.state("feed") is ExperimentState.DRAFT
    with pytest.raises(InvalidTransitionError, match=r"is draft; it cannot become paused \(allowed: ended, running\)"):
        store.transition("feed", "paused")
    assert store.transition("feed", "running") is ExperimentState.RUNNING
    assert store.transition("feed", ExperimentState.PAUSED) is ExperimentState.PAUSED
    assert store.transition("feed", "running") is ExperimentState.RUNNING
    store.transition("feed", "ended")
    with pytest.raises(InvalidTransitionError, match=r"allowed: none \(ended is final\)"):
        store.transition("feed", "running")
    with pytest.raises(ValueError):
        store.transition("feed", "sleeping")


def test_versions_are_immutable_and_the_pointer_only_moves_forward(store: ParamStore) -> None:
    spec, dist = _launched(store)
    with pytest.raises(VersionConflictError, match="version 1 exists already and is immutable"):
        store.write_version(make_distribution(spec, 1, weights=[0.5, 0.25, 0.25]))
    v3 = make_distribution(spec, 3)
    store.write_version(v3)
    store.activate("feed", 3)
    v2 = make_distribution(spec, 2)
    store.write_version(v2)
    with pytest.raises(VersionConflictError, match="version 2 is not newer than current 3"):
        store.activate("feed", 2)
    with pytest.raises(VersionNotFoundError, match="no version 7 to activate"):
        store.activate("feed", 7)
    assert store.current_version("feed") == 3
    assert [v for v, _ in store.history("feed")] == [1, 3]


def test_rollback_publishes_a_new_version_with_old_content(store: ParamStore) -> None:
    spec, v1 = _launched(store)
    store.publish(make_distribution(spec, store.next_version("feed"), weights=[0.2, 0.7, 0.1]))
    rolled = store.rollback("feed", 1)
    assert rolled.version == 3 and rolled.source_version == 1
    assert rolled.arms == v1.arms and store.current("feed") == rolled
    with pytest.raises(VersionNotFoundError, match="never activated version 9"):
        store.rollback("feed", 9)


def test_current_before_any_publish(store: ParamStore) -> None:
    store.create_experiment(make_spec())
    with pytest.raises(VersionNotFoundError, match="no published distribution yet"):
        store.current("feed")
    with pytest.raises(ExperimentNotFoundError):
        store.current("other")


def test_observations_add_up_in_every_input_form(store: ParamStore) -> None:
    _launched(store)
    store.add_observations("feed", make_rows(1, "arm1", "sessions", count=10, total=4))
    store.add_observations("feed", [
        {"version": 1, "arm_id": "arm1", "metric": "sessions", "value": 1.0},
        {"version": 1, "arm_id": "arm1", "metric": "sessions", "count": 4, "mean": 0.5, "std_error": math.sqrt(0.25 / 4 * 4 / 3)},
        {"version": 1, "arm_id": "control", "metric": "applies", "count": 2, "sum": 1, "sum_sq": 1, "source": "simulation"},
    ])
    frame = store.observations("feed")
    assert list(frame.columns) == ["version", "arm_id", "metric", "source", "count", "sum", "sum_sq"]
    row = frame[(frame.arm_id == "arm1")].iloc[0]
    assert (row["count"], row["sum"]) == (15.0, 7.0)
    assert row["sum_sq"] == pytest.approx(4 + 1 + 2.0)  # 0/1 outcomes: sum of squares equals the sum
    assert set(frame.source) == {"online", "simulation"}


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ({"version": 1, "arm_id": "arm1", "metric": "sessions", "count": float("nan"), "sum": 1, "sum_sq": 1}, "rows[1].count: must be finite"),
        ({"version": 1, "arm_id": "arm1", "metric": "sessions", "count": -3, "sum": 1, "sum_sq": 1}, "rows[1].count: must be positive"),
        ({"version": 1, "arm_id": "arm1", "metric": "sessions", "count": 4, "sum": 4, "sum_sq": 1}, "rows[1].sum_sq: 1.0 is below sum**2/count"),
        ({"version": 0, "arm_id": "arm1", "metric": "sessions", "value": 1}, "rows[1].version: must be a positive integer"),
        ({"version": 1, "arm_id": "arm1", "metric": "sessions", "value": 1, "source": "guess"}, "rows[1].source: must be one of"),
        ({"version": 1, "arm_id": "arm1", "metric": "sessions"}, "rows[1]: give count+sum+sum_sq"),
    ],
)
def test_bad_rows_refuse_the_whole_batch(store: ParamStore, row: dict, fragment: str) -> None:
    _launched(store)
    good = make_rows(1, "arm1", "sessions")[0]
    with pytest.raises(ObservationValidationError) as err:
        store.add_observations("feed", [good, row])
    assert any(fragment in p for p in err.value.problems), err.value.problems
    assert store.observations("feed").empty


def test_rows_naming_unknown_versions_arms_or_metrics_are_refused(store: ParamStore) -> None:
    _launched(store)
    good = make_rows(1, "arm1", "sessions")[0]
    with pytest.raises(ObservationRejectedError) as err:
        store.add_observations("feed", [good, {**good, "version": 5}, {**good, "arm_id": "ghost"}, {**good, "metric": "revenue"}])
    text = " | ".join(err.value.problems)
    assert "version 5: 'feed' has no such distribution version" in text
    assert "arm_id 'ghost': not an arm of 'feed' version 1" in text
    assert "metric 'revenue': not a metric of 'feed'" in text
    assert store.observations("feed").empty


def test_run_records_newest_first(store: ParamStore) -> None:
    _launched(store)
    for i in range(3):
        store.record_run("feed", {"run": i})
    assert [r["run"] for r in store.runs("feed", 2)] == [2, 1]


def test_watcher_hears_publish_and_polls(store: ParamStore) -> None:
    spec, _ = _launched(store)
    heard: list[tuple[str, int]] = []
    events = {1: threading.Event(), 2: threading.Event()}

    def on_version(name: str, version: int) -> None:
        heard.append((name, version))
        events[version].set()

    watcher = VersionWatcher(store, on_version, lambda: ["feed"], poll_interval_s=30.0).start()
    try:
        assert events[1].wait(10), heard  # the catch-up poll once subscribed; publishing earlier would skip it
        store.publish(make_distribution(spec, store.next_version("feed")))
        assert events[2].wait(10), heard  # within 10 s although the poll interval is 30 s: pub/sub delivered it
    finally:
        watcher.stop()
    assert heard[0] == ("feed", 1) and heard[-1] == ("feed", 2)


def test_watcher_falls_back_to_polling(store: ParamStore, raw_redis: redis.Redis, raw_keys: Keys) -> None:
    spec, _ = _launched(store)
    heard: list[int] = []
    watcher = VersionWatcher(store, lambda n, v: heard.append(v), lambda: ["feed"], poll_interval_s=0.2)
    store.write_version(make_distribution(spec, 2))
    # A pointer moved without a message (as when the subscriber was disconnected): polling must notice it.
    raw_redis.set(raw_keys.current("feed"), 2)
    watcher.poll_once()
    assert heard == [2]


def test_observations_frame_is_empty_with_columns(store: ParamStore) -> None:
    _launched(store)
    frame = store.observations("feed")
    assert isinstance(frame, pd.DataFrame) and frame.empty and "sum_sq" in frame.columns


@pytest.mark.parametrize(("count", "total", "total_sq"), [(2, 5.0, 12.5), (2, -6.0, 18.0), (4, 2.0, 4.5)])
def test_rate_outcomes_outside_zero_one_are_refused_and_nothing_is_stored(store: ParamStore, count, total, total_sq) -> None:
    """``sessions`` is a rate: a mean of 2.5 or -3, or a sum of squares above the count, is no set of 0/1-ish outcomes."""
    _launched(store)
    good = make_rows(1, "arm1", "sessions")[0]
    bad = {"version": 1, "arm_id": "control", "metric": "sessions", "count": count, "sum": total, "sum_sq": total_sq}
    with pytest.raises(ObservationRejectedError) as err:
        store.add_observations("feed", [good, bad])
    assert any("metric 'sessions' (version 1, arm 'control'): a rate's outcomes lie in [0, 1]" in p for p in err.value.problems)
    assert store.observations("feed").empty
