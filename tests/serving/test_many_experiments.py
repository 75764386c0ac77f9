"""One serving worker holding 1,000 experiments: every one is held and answered from its own distribution.

Latency against the number held is a benchmark (``bayesopt bench scale``, part ``serving``); this checks that a
worker holds them all at once, keyed right, without a Redis read on the parameter path.
"""

from __future__ import annotations

import time

import requests

from param_store import ParamStore
from tests.serving.conftest import launch

HELD = 1000
BASE_TIME = 1_700_000_000.0


def test_a_worker_holds_1000_experiments_and_answers_each_from_its_own_distribution(store: ParamStore, serve) -> None:
    names = [f"held-{i:04d}" for i in range(HELD)]
    arms_of: dict[str, set[str]] = {}
    for i, name in enumerate(names):  # arm counts and creation times differ, so a mix-up would show
        weights = [0.2, *([0.8 / (2 + i % 4)] * (2 + i % 4))]
        dist = launch(store, name, weights=weights, created_at=BASE_TIME + i)
        arms_of[name] = {a.arm_id for a in dist.arms}
    live = serve()
    deadline = time.monotonic() + 60
    while (ready := requests.get(f"{live.base_url}/v1/ready", timeout=5).json())["experiments"] < HELD:
        assert time.monotonic() < deadline, ready
        time.sleep(0.2)
    assert ready["status"] == "ready" and live.ctx.cache.sizes()["snapshots"] == HELD

    for i, name in enumerate(names):  # what the parameter path reads: the worker's own snapshot, no Redis
        _, served = live.ctx.cache.get(name).distributions[-1]
        assert served.experiment == name and {a.arm_id for a in served.arms} == arms_of[name]
        assert served.created_at == BASE_TIME + i
    with requests.Session() as http:
        for i in range(0, HELD, 10):
            name = names[i]
            r = http.get(f"{live.base_url}/v1/experiments/{name}/params", params={"member_id": f"m{i}"}, timeout=5)
            assert r.status_code == 200, (name, r.text)
            body = r.json()
            assert body["experiment"] == name and body["version"] == 1 and body["arm_id"] in arms_of[name], body
        for i in range(0, HELD, 101):
            snapshot = http.get(f"{live.base_url}/v1/experiments/{names[i]}/distribution", timeout=5).json()
            assert snapshot["distribution"]["created_at"] == BASE_TIME + i
            assert len(snapshot["distribution"]["arms"]) == len(arms_of[names[i]])
