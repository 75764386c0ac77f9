"""Fixtures of the simulation tests: one small world per module, its spec, and a table of noise-free windows."""

from __future__ import annotations

import pytest

from bayesopt.spec import ExperimentSpec
from simulations.world import RankingWorld, make_world

#: A smaller pool than the default keeps the exhaustive lattice search of best_feasible near a second.
TEST_POOL = 1024


@pytest.fixture(scope="module")
def world() -> RankingWorld:
    return make_world(2, seed=7, pool_sessions=TEST_POOL)


@pytest.fixture(scope="module")
def spec(world: RankingWorld) -> ExperimentSpec:
    return world.spec("sim_test")
