"""Statistical contracts of sticky assignment, checked over real HTTP against the real store.

Every chi-square test uses a fixed set of member ids (the hash is deterministic, so each test is a fixed draw)
and the critical value at p = 0.001 from ``scipy.stats.chi2.ppf(0.999, df)``.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from scipy.stats import chi2

from param_store import ParamStore
from serving import total_variation
from tests.serving.conftest import assign_all, launch, member_ids, publish

N_MEMBERS = 200_000
P_VALUE = 0.001
T0 = 1_700_000_000.0  # valid_from of version 1 in these tests
WEIGHTS = [0.2, 0.1, 0.3, 0.15, 0.25]


def chi_square_gof(counts: dict[str, int], expected_share: dict[str, float], n: int) -> tuple[float, float]:
    """Pearson's statistic and the p = 0.001 critical value for observed ``counts`` against ``expected_share``."""
    stat = sum((counts.get(a, 0) - n * p) ** 2 / (n * p) for a, p in expected_share.items())
    assert set(counts) <= set(expected_share), f"arms outside the distribution: {set(counts) - set(expected_share)}"
    return stat, chi2.ppf(1 - P_VALUE, len(expected_share) - 1)


@pytest.mark.slow
def test_arm_frequencies_match_weights_over_200k_members(store: ParamStore, live) -> None:
    dist = launch(store, "feed", WEIGHTS)
    assignments = assign_all(live.client(), "feed", member_ids(N_MEMBERS), at=T0 + 10)
    counts = Counter(a.arm_id for a in assignments)
    expected = {a.arm_id: a.weight for a in dist.arms}
    stat, critical = chi_square_gof(counts, expected, N_MEMBERS)
    assert stat < critical, f"chi-square {stat:.1f} >= {critical:.1f} (df={len(expected) - 1}); counts {counts}"
    assert all(a.propensity == pytest.approx(expected[a.arm_id]) for a in assignments[:1000])
    assert all(a.in_experiment and a.on_control == (a.arm_id == "control") for a in assignments[:1000])


@pytest.mark.slow
def test_two_experiments_assign_independently(store: ParamStore, live) -> None:
    launch(store, "feed", WEIGHTS)
    launch(store, "jobs", [0.4, 0.35, 0.25])
    ids = member_ids(N_MEMBERS)
    client = live.client()
    feed = [a.arm_id for a in assign_all(client, "feed", ids, at=T0 + 10)]
    jobs = [a.arm_id for a in assign_all(client, "jobs", ids, at=T0 + 10)]
    table = Counter(zip(feed, jobs, strict=True))
    rows, cols = Counter(feed), Counter(jobs)
    stat = sum(
        (table.get((r, c), 0) - rows[r] * cols[c] / N_MEMBERS) ** 2 / (rows[r] * cols[c] / N_MEMBERS)
        for r in rows for c in cols
    )
    df = (len(rows) - 1) * (len(cols) - 1)
    assert stat < chi2.ppf(1 - P_VALUE, df), f"contingency chi-square {stat:.1f} (df={df}) says the experiments are dependent"


def test_experiment_share_enrols_a_stable_slice(store: ParamStore, live) -> None:
    n = 40_000
    dist = launch(store, "feed", WEIGHTS, traffic={"experiment_share": 0.3, "control_share": 0.2})
    client = live.client()
    hour = dist.valid_from + 3600
    now = assign_all(client, "feed", member_ids(n), at=dist.valid_from + 10)
    later = assign_all(client, "feed", member_ids(n), at=hour + 10)
    enrolled = [a.in_experiment for a in now]
    share = sum(enrolled) / n
    assert abs(share - 0.3) < 4.5 * (0.3 * 0.7 / n) ** 0.5, f"enrolled share {share:.4f}, expected 0.3"
    assert enrolled == [a.in_experiment for a in later], "the exploration slice must not change with the epoch"
    outside = [a for a in now if not a.in_experiment]
    assert all(a.arm_id == "control" and a.on_control and a.propensity == 1.0 for a in outside)


def test_same_arm_within_an_epoch_fresh_draw_in_the_next(store: ParamStore, live) -> None:
    n = 40_000
    launch(store, "feed", WEIGHTS)  # stickiness: one hour
    client = live.client()
    epoch_start = (T0 // 3600 + 1) * 3600
    ids = member_ids(n)
    first = [a.arm_id for a in assign_all(client, "feed", ids, at=epoch_start)]
    same_epoch = [a.arm_id for a in assign_all(client, "feed", ids, at=epoch_start + 3599.9)]
    next_epoch = [a.arm_id for a in assign_all(client, "feed", ids, at=epoch_start + 3600)]
    assert first == same_epoch
    changed = sum(a != b for a, b in zip(first, next_epoch, strict=True)) / n
    independent = 1 - sum(w * w for w in WEIGHTS)  # two independent draws differ this often
    assert abs(changed - independent) < 0.01


def test_version_in_force_follows_valid_from(store: ParamStore, live) -> None:
    launch(store, "feed", WEIGHTS, created_at=T0)
    boundary = T0 + 3600
    publish(store, "feed", [0.5, 0.5], created_at=boundary)  # published early, in force at the boundary
    client = live.client()
    # The worker may have loaded version 1 on launch's announcement; version 2 arrives on the watcher thread.
    deadline = time.monotonic() + 10
    while client.distribution("feed")["version"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.params("feed", "m1", at=boundary - 0.001).version == 1
    assert client.params("feed", "m1", at=boundary).version == 2
    assert {a.arm_id for a in client.params_batch("feed", member_ids(500), at=boundary + 1)} == {"control", "arm1"}


@pytest.mark.slow
def test_coupled_mode_churn_is_within_one_point_of_total_variation(store: ParamStore, serve) -> None:
    p_weights, q_weights = WEIGHTS, [0.3, 0.25, 0.05, 0.1, 0.2, 0.1]  # q adds an arm and moves mass across arms
    p = launch(store, "feed", p_weights, created_at=T0)
    q = publish(store, "feed", q_weights, created_at=T0 + 3600)
    live = serve(modes={"feed": "coupled"})
    ids = member_ids(N_MEMBERS)
    client = live.client()
    before = assign_all(client, "feed", ids, at=T0 + 10)
    after = assign_all(client, "feed", ids, at=T0 + 3610)
    churn = sum(a.arm_id != b.arm_id for a, b in zip(before, after, strict=True)) / N_MEMBERS
    tv = total_variation({a.arm_id: a.weight for a in p.arms}, {a.arm_id: a.weight for a in q.arms})
    assert abs(churn - tv) < 0.01, f"churn {churn:.4f} vs TV {tv:.4f}"
    for dist, assigned in ((p, before), (q, after)):  # the coupling keeps each version's marginal exact
        stat, critical = chi_square_gof(Counter(a.arm_id for a in assigned), {a.arm_id: a.weight for a in dist.arms}, N_MEMBERS)
        assert stat < critical, f"version {dist.version}: chi-square {stat:.1f} >= {critical:.1f}"
