"""The refit pipeline against a real Redis: what it publishes, what it keeps, and what it reports."""

from __future__ import annotations

import time

import pytest

from jobs.refit import RefitOptions, refit_experiment
from jobs.runs import Reason, RunStatus
from param_store import EmbeddedRedis, ExperimentState, ParamStore
from tests.jobs.helpers import POLICY, launch, observe

STUB = "tests.jobs.helpers:StubPolicy"
NOW = 1_900_000_000.0  # a fixed clock: periods are the hours around it
HOUR = 3600.0
FAST = RefitOptions(activation_delay_s=0.0, lock_ttl_s=30.0)


@pytest.fixture
def refit(redis_server: EmbeddedRedis, namespace: str):
    def run(name: str = "feed", *, now: float = NOW, policy: str = STUB, options: RefitOptions = FAST, **kwargs):
        return refit_experiment(redis_server.url, namespace, name, now=now, policy=policy, options=options, **kwargs)

    return run


def test_a_refit_publishes_a_new_version_and_records_the_run(store: ParamStore, refit) -> None:
    launch(store)
    observe(store, "feed")
    record = refit(options=RefitOptions(activation_delay_s=90.0))
    assert record.status is RunStatus.PUBLISHED and record.version == 2 and record.previous_version == 1
    dist = store.current(record.experiment)
    assert dist.version == 2 and dist.valid_from == NOW + 90.0
    assert dist.diagnostics["refit"]["period"] == record.period == int(NOW // HOUR * HOUR)
    assert record.observations == 10 and record.observation_count == 4000
    assert {"load", "policy", "validate", "publish", "total"} <= set(record.timings)
    [stored] = store.runs("feed")
    assert stored["status"] == "published" and stored["version"] == 2 and stored["duration_s"] >= 0


def test_rerunning_a_period_on_the_same_data_publishes_nothing(store: ParamStore, refit) -> None:
    launch(store)
    observe(store, "feed")
    assert refit().status is RunStatus.PUBLISHED
    again = refit(now=NOW + 60)
    assert (again.status, again.reason) == (RunStatus.SKIPPED, Reason.DONE)
    manual = refit(now=NOW + 60, options=RefitOptions(activation_delay_s=0.0, once_per_period=False))
    assert (manual.status, manual.reason) == (RunStatus.SKIPPED, Reason.UNCHANGED)
    assert store.current_version("feed") == 2 and len(store.runs("feed")) == 1


def test_a_manual_refit_in_a_refitted_period_publishes_only_when_the_data_changed(store: ParamStore, refit) -> None:
    launch(store)
    observe(store, "feed")
    refit()
    observe(store, "feed", version=1)
    manual = refit(now=NOW + 60, options=RefitOptions(activation_delay_s=0.0, once_per_period=False))
    assert manual.status is RunStatus.PUBLISHED and manual.version == 3


def test_the_next_period_refits_again(store: ParamStore, refit) -> None:
    launch(store)
    observe(store, "feed")
    assert refit().version == 2
    assert refit(now=NOW + HOUR).version == 3


@pytest.mark.parametrize("value", ["nan", "-4"])
def test_a_broken_count_in_stored_data_is_reported_not_published(
    store: ParamStore, raw_redis, raw_keys, refit, value: str
) -> None:
    launch(store)
    observe(store, "feed")
    raw_redis.hset(raw_keys.observations("feed"), "1|control|sessions|online|n", value)  # some other writer
    record = refit()
    assert (record.status, record.reason) == (RunStatus.KEPT, Reason.INVALID_DATA)
    expected = "nan" if value == "nan" else "-4.0"
    assert record.problems == (
        f"version 1, arm control, metric sessions, source online: count is {expected} (must be a positive finite number)",
    )
    assert store.current_version("feed") == 1
    [stored] = store.runs("feed")
    assert stored["reason"] == "invalid_data" and stored["problems"] == list(record.problems)


def test_undecodable_stored_data_is_reported(store: ParamStore, raw_redis, raw_keys, refit) -> None:
    launch(store)
    observe(store, "feed")
    raw_redis.hset(raw_keys.observations("feed"), "1|control|sessions|online|s", "lots")
    record = refit()
    assert record.reason is Reason.INVALID_DATA and "cannot be decoded" in record.problems[0]
    assert store.current_version("feed") == 1


@pytest.mark.parametrize("target", [ExperimentState.PAUSED, ExperimentState.ENDED])
def test_paused_and_ended_experiments_are_not_refitted(store: ParamStore, refit, target: ExperimentState) -> None:
    launch(store)
    observe(store, "feed")
    store.transition("feed", target)
    record = refit()
    assert (record.status, record.reason) == (RunStatus.SKIPPED, Reason.NOT_RUNNING)
    assert record.message == f"experiment is {target.value}"
    assert store.current_version("feed") == 1 and store.runs("feed") == []


def test_thin_data_keeps_the_current_version_and_says_why(store: ParamStore, refit) -> None:
    launch(store, refit={"min_observations": 50})
    observe(store, "feed")
    record = refit()
    assert (record.status, record.reason) == (RunStatus.KEPT, Reason.INSUFFICIENT_DATA)
    assert record.message == "10 observation rows, refit.min_observations is 50"
    assert store.current_version("feed") == 1


def test_no_data_at_all_is_thin_data(store: ParamStore, refit) -> None:
    launch(store)
    assert refit().reason is Reason.INSUFFICIENT_DATA


def test_a_failing_fit_keeps_the_current_version(store: ParamStore, refit) -> None:
    launch(store, "bad-fit")
    observe(store, "bad-fit")
    record = refit("bad-fit", policy="tests.jobs.helpers:FailingPolicy")
    assert (record.status, record.reason) == (RunStatus.KEPT, Reason.FIT_FAILED)
    assert record.message == "ModelFitError: bad-fit: the GP did not converge (test)"
    assert store.current_version("bad-fit") == 1


def test_an_invalid_proposal_is_not_published(store: ParamStore, refit) -> None:
    launch(store)
    observe(store, "feed")
    record = refit(policy="tests.jobs.helpers:OutOfBoundsPolicy")
    assert (record.status, record.reason) == (RunStatus.KEPT, Reason.INVALID_DISTRIBUTION)
    assert any("is outside the bounds [0.0, 2.0]" in p for p in record.problems)
    assert store.current_version("feed") == 1


def test_a_period_locked_by_another_process_is_skipped(store: ParamStore, raw_redis, raw_keys, refit) -> None:
    launch(store)
    observe(store, "feed")
    period = int(NOW // HOUR * HOUR)
    raw_redis.set(raw_keys.lock("feed", f"refit:{period}"), "someone-else", px=30_000)
    record = refit()
    assert (record.status, record.reason) == (RunStatus.SKIPPED, Reason.LOCKED)
    assert raw_redis.get(raw_keys.lock("feed", f"refit:{period}")) == b"someone-else"  # not ours to release


def test_a_version_published_while_the_refit_ran_is_not_overwritten(store: ParamStore, refit) -> None:
    launch(store)
    observe(store, "feed")
    first = refit().version

    def progress(stage: str, seconds: float | None, detail: str) -> None:
        if stage == "validate" and seconds is None:
            store.rollback("feed", 1)  # an operator rolls back mid-refit

    record = refit(now=NOW + HOUR, progress=progress)
    assert (record.status, record.reason) == (RunStatus.KEPT, Reason.SUPERSEDED)
    assert store.current("feed").source_version == 1 and store.current_version("feed") == first + 1


def test_a_run_that_published_but_died_before_its_marker_is_recognised(
    store: ParamStore, raw_redis, raw_keys, refit
) -> None:
    launch(store)
    observe(store, "feed")
    published = refit()
    raw_redis.delete(raw_keys.refit_done("feed", published.period))
    again = refit(now=NOW + 60)
    assert (again.status, again.version) == (RunStatus.SKIPPED, published.version)
    assert store.refit_done("feed", published.period)["status"] == "published"


def test_the_model_state_is_kept_and_handed_to_the_next_fit(store: ParamStore, refit) -> None:
    launch(store)
    observe(store, "feed")
    refit()
    assert store.load_model_state("feed")["state"]["calls"] == 1
    refit(now=NOW + HOUR)
    saved = store.load_model_state("feed")
    assert saved["version"] == 3 and saved["state"]["calls"] == 2


def test_progress_reports_every_stage_with_timings(store: ParamStore, refit) -> None:
    launch(store)
    observe(store, "feed")
    events: list[tuple[str, bool]] = []
    refit(progress=lambda stage, seconds, detail: events.append((stage.strip(), seconds is not None)))
    finished = [stage for stage, done in events if done]
    assert finished == ["load", "import", "policy", "fit", "sample", "validate", "publish"]


def test_an_unreachable_store_is_a_failed_run_not_an_exception(tmp_path) -> None:
    record = refit_experiment(f"unix://{tmp_path}/nothing.sock", "ns", "feed", policy=STUB, options=FAST)
    assert (record.status, record.reason) == (RunStatus.FAILED, Reason.ERROR)
    assert "ConnectionError" in record.message


def test_a_real_fit_publishes_a_valid_distribution(store: ParamStore, refit) -> None:
    spec = launch(store)
    observe(store, "feed")
    t0 = time.perf_counter()
    record = refit(policy=POLICY)
    assert record.status is RunStatus.PUBLISHED, record
    dist = store.current("feed")
    assert dist.problems(spec) == [] and dist.arm("control").weight >= spec.traffic.control_share
    assert record.num_observations and time.perf_counter() - t0 < 60
    assert store.load_model_state("feed") is not None
