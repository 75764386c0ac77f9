"""Roll-up of old windows on a real store: refits read the roll-up plus the recent windows and pool exactly
what the rows would give; nothing stored is lost; stale roll-ups are rebuilt."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bayesopt.observation_table import observation_table
from bayesopt.pooling import PooledData, pool
from bayesopt.rollup import KEEP_WINDOWS, ROLL_EVERY, rollup_key
from bayesopt.spec import ExperimentSpec
from jobs.load import load_inputs, served_arm_values
from jobs.refit import RefitOptions, refit_experiment
from param_store import ParamStore
from simulations.bench_refit import HOUR, T0, History, bench_spec

ARMS = 30
#: Enough windows for one roll-up: more than KEEP_WINDOWS + ROLL_EVERY.
WINDOWS = KEEP_WINDOWS + ROLL_EVERY + 14
#: Agreement of pooled figures: sums in another order differ by a few ulps per term, hundreds of terms.
RTOL = 1e-10


class NoisyHistory(History):
    """:class:`History` whose ``dwell`` rows have spreads that differ (so the noise floor binds on the rows below
    the pooled spread, and rolled-up rows depend on that pooled level), and whose arms' ``sessions`` rate rises
    by ``shift`` from window ``shift_at`` on."""

    def __init__(self, *args, shift_at: int | None = None, shift: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shift_at, self.shift = shift_at, shift

    def _row(self, version, arm, metric, u, count):
        row = super()._row(version, arm, metric, u, count)
        if metric == "dwell":
            row["sum_sq"] = row["sum"] ** 2 / count + 100.0 * self.rng.uniform(0.5, 1.5) * (count - 1)
        if self.shift_at is not None and version >= self.shift_at and metric == "sessions" and arm != "control":
            row["sum"] = row["sum_sq"] = float(min(count, row["sum"] + round(self.shift * count)))
        return row


def spec_with(name: str, **policy) -> ExperimentSpec:
    doc = bench_spec(name, candidates=64, draws=100).to_dict()
    doc["policy"].update(policy)
    return ExperimentSpec.from_dict(doc)


def assert_same_pooling(got: PooledData, want: PooledData) -> None:
    assert got.metrics.keys() == want.metrics.keys()
    assert (got.num_rows, got.dropped, got.newest_window) == (want.num_rows, want.dropped, want.newest_window)
    assert (got.drift.detected, got.drift.since_window, got.drift.tests) == (want.drift.detected, want.drift.since_window, want.drift.tests)
    assert got.drift.p_value == pytest.approx(want.drift.p_value, rel=1e-6, abs=1e-300)
    for metric, w in want.metrics.items():
        g = got.metrics[metric]
        assert g.arm_ids == w.arm_ids and g.num_rows == w.num_rows
        np.testing.assert_array_equal(g.X, w.X)
        np.testing.assert_allclose(g.delta, w.delta, rtol=RTOL, atol=RTOL * float(np.sqrt(w.var.max())))
        np.testing.assert_allclose(g.var, w.var, rtol=RTOL)
        assert g.baseline == pytest.approx(w.baseline, rel=RTOL) and g.baseline_se == pytest.approx(w.baseline_se, rel=RTOL)


def rows_pooled(store: ParamStore, name: str) -> PooledData:
    """Pooling of every stored row, one by one, as before roll-ups existed."""
    spec, stats = store.load_spec(name), store.observations(name)
    return pool(spec, observation_table(spec, stats, served_arm_values(store, name, stats)))


@pytest.mark.parametrize(("half_life", "shift_at"), [(None, None), (24.0, WINDOWS - 12)])
def test_pooling_after_a_roll_up_equals_pooling_every_row(store: ParamStore, half_life, shift_at) -> None:
    spec = spec_with("rolled", half_life_hours=half_life)
    history = NoisyHistory(store, spec, ARMS, seed=5, shift_at=shift_at, shift=0.1)
    history.add_windows(WINDOWS)
    before = store.observations(spec.name)
    want = rows_pooled(store, spec.name)
    inputs = load_inputs(store, spec.name)  # rolls up
    assert inputs.rollup is not None and inputs.rollup.windows == WINDOWS - KEEP_WINDOWS
    assert inputs.table["window"].nunique() == KEEP_WINDOWS
    assert want.drift.detected == (shift_at is not None)
    assert_same_pooling(pool(spec, inputs.table), want)
    again = load_inputs(store, spec.name)  # reads the roll-up and the recent rows only
    assert len(again.stats) == len(inputs.stats) < len(before)
    assert again.data_hash == inputs.data_hash
    assert_same_pooling(pool(spec, again.table), want)
    pd.testing.assert_frame_equal(store.observations(spec.name), before)  # nothing accepted is lost
    assert again.observation_count == pytest.approx(float(before["count"].sum()))


def test_a_second_roll_up_adds_to_the_first_and_a_late_batch_rebuilds_it(store: ParamStore) -> None:
    spec = spec_with("rolled-twice", half_life_hours=48.0)
    history = NoisyHistory(store, spec, ARMS, seed=6)
    history.add_windows(WINDOWS)
    first = load_inputs(store, spec.name).rollup
    history.add_windows(ROLL_EVERY + 1)
    second = load_inputs(store, spec.name)
    assert second.rollup.watermark > first.watermark and second.rollup.windows == first.windows + ROLL_EVERY + 1
    # The first roll-up floored its rows with the pooled dwell spread P of its day; the rows since moved P by
    # dP. A floored row's variance (dof * s2 + 2 P) / ((dof + 2) n) moves by 2 dP / ((dof + 2) n), relative
    # to s2 / n at most 2 (dP / P) P / ((dof + 2) s2) <= 2 (dP / P) / (401 * 0.5) ~ 1e-2 dP / P here (dof = 399,
    # s2 >= P / 2); the spreads are uniform on [50, 150], so dP / P is well below 10%: bound 1e-3.
    assert_close_pooling(pool(spec, second.table), rows_pooled(store, spec.name), rtol=1e-3)
    late = [{"version": 3, "arm_id": "control", "metric": "sessions", "count": 50, "sum": 15, "sum_sq": 15}]
    store.add_observations(spec.name, late)
    rebuilt = load_inputs(store, spec.name)
    assert rebuilt.rollup.watermark == second.rollup.watermark
    assert int((rebuilt.stats["version"] < rebuilt.rollup.watermark).sum()) == 0  # the late row moved too
    assert_same_pooling(pool(spec, rebuilt.table), rows_pooled(store, spec.name))


def test_a_control_level_no_longer_positive_rebuilds_a_roll_up_that_summed_it_relative(store: ParamStore) -> None:
    spec = spec_with("turned")
    NoisyHistory(store, spec, ARMS, seed=10).add_windows(WINDOWS)
    first = load_inputs(store, spec.name).rollup
    assert first.metrics["dwell"].relative and not first.absolute_metrics
    newest = int(store.observations(spec.name)["version"].max())  # a kept window: not a late batch
    store.add_observations(spec.name, [{"version": newest, "arm_id": "control", "metric": "dwell", "value": -1e9}])
    rebuilt = load_inputs(store, spec.name)
    assert rebuilt.rollup.watermark == first.watermark and rebuilt.rollup.absolute_metrics == {"dwell"}
    assert_same_pooling(pool(spec, rebuilt.table), rows_pooled(store, spec.name))  # dwell absolute, rolled too


def assert_close_pooling(got: PooledData, want: PooledData, *, rtol: float) -> None:
    for metric, w in want.metrics.items():
        g = got.metrics[metric]
        assert g.arm_ids == w.arm_ids
        np.testing.assert_allclose(g.var, w.var, rtol=rtol)
        np.testing.assert_allclose(g.delta, w.delta, atol=rtol * float(np.sqrt(w.var.max())))


def mean_applies(name: str) -> ExperimentSpec:
    doc = spec_with(name).to_dict()
    doc["metrics"] = [{**m, "kind": "mean"} if m["name"] == "applies" else m for m in doc["metrics"]]
    return ExperimentSpec.from_dict(doc)


@pytest.mark.parametrize("changed", [lambda name: spec_with(name, half_life_hours=12.0), mean_applies],
                         ids=["half-life", "metric-kind"])
def test_a_spec_change_the_roll_up_depends_on_rebuilds_it(store: ParamStore, changed) -> None:
    spec = spec_with("respecced")
    NoisyHistory(store, spec, ARMS, seed=7).add_windows(WINDOWS)
    assert load_inputs(store, spec.name).rollup.key == rollup_key(spec)
    new_spec = changed(spec.name)
    store.save_spec(new_spec)
    inputs = load_inputs(store, spec.name)
    assert inputs.rollup.key == rollup_key(new_spec) != rollup_key(spec)
    assert_same_pooling(pool(new_spec, inputs.table), rows_pooled(store, spec.name))


def test_a_roll_up_changes_nothing_when_a_batch_landed_since_the_read(store: ParamStore) -> None:
    spec = spec_with("raced")
    NoisyHistory(store, spec, ARMS, seed=8).add_windows(WINDOWS)
    recent = store.recent_observations(spec.name)
    store.add_observations(spec.name, [{"version": 2, "arm_id": "control", "metric": "dwell", "value": 31.0}])
    assert not store.roll_up_observations(spec.name, recent, WINDOWS - KEEP_WINDOWS, "{}")
    assert store.recent_observations(spec.name).rollup is None
    assert len(store.recent_observations(spec.name).stats) == len(recent.stats)


def test_an_experiment_stored_before_roll_ups_refits_rolls_up_and_publishes_the_same_distribution(store: ParamStore, redis_server) -> None:
    from bayesopt.policy import GPPolicy

    spec = spec_with("old-data")
    NoisyHistory(store, spec, ARMS, seed=9).add_windows(WINDOWS)
    rows = load_inputs(store, spec.name, roll_up=False)
    want = GPPolicy().propose(spec, rows.table, seed=11, now=T0 + WINDOWS * HOUR)
    rolled = load_inputs(store, spec.name)
    assert rolled.rollup is not None
    got = GPPolicy().propose(spec, rolled.table, seed=11, now=T0 + WINDOWS * HOUR)
    assert [a.arm_id for a in got.arms] == [a.arm_id for a in want.arms]
    assert all(math.isclose(a.weight, b.weight, rel_tol=1e-6) for a, b in zip(got.arms, want.arms, strict=True))
    record = refit_experiment(redis_server.url, store.namespace, spec.name, now=T0 + WINDOWS * HOUR,
                              options=RefitOptions(activation_delay_s=0.0, force=True))
    assert record.status.value == "published", record.summary()
    assert record.observations < len(store.observations(spec.name))  # it read the recent windows only
