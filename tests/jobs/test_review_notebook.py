"""The review notebook runs top to bottom on an experiment refitted for real, and its figures hold what they say."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from param_store import EmbeddedRedis, ParamStore
from param_store.launch import launch_experiment
from tests.factories import spec_dict
from tests.jobs.analyst_helpers import SMALL_POLICY, START, run_refits

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "pareto_review.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"
#: A kernel start, imports (torch, botorch) and one small fit: well under a minute on a shared core.
CELL_TIMEOUT_S = 240


def figures(nb: nbformat.NotebookNode) -> list[dict]:
    return [out["data"][PLOTLY] for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
            if PLOTLY in out.get("data", {})]


def test_the_notebook_reviews_a_stored_experiment(redis_server: EmbeddedRedis, store: ParamStore, tmp_path: Path,
                                                   monkeypatch) -> None:
    launch_experiment(store, spec_dict("review", policy=SMALL_POLICY), now=START)
    run_refits(redis_server, store, "review", 3)
    for key, value in {"BAYESOPT_REVIEW_SOURCE": "store", "BAYESOPT_REVIEW_EXPERIMENT": "review",
                       "REDIS_URL": redis_server.url, "BAYESOPT_NAMESPACE": store.namespace,
                       "BAYESOPT_REVIEW_PNG_DIR": str(tmp_path / "png"), "BAYESOPT_REVIEW_POINTS": "128", "BAYESOPT_REVIEW_RENDERER": "plotly_mimetype",
                       "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # raises if any cell fails
    frontier, weights, guardrails, ship = figures(nb)
    names = {t.get("name") for t in frontier["data"]}
    assert names == {"feasible points", "infeasible points", "90% credible band", "predicted frontier", "observed arms",
                     "observed frontier", "current distribution", "guardrail limit"}
    assert "sessions against applies" in frontier["layout"]["title"]["text"]
    served = {a.arm_id for v, _ in store.history("review") for a in store.load_version("review", v).arms}
    assert {t["name"] for t in weights["data"]} == served
    assert len(weights["data"][0]["x"]) == len(store.history("review"))
    assert [t["name"] for t in guardrails["data"]] == ["observed margin (served mix)", "predicted margin (current distribution)"]
    assert all(t["x"] == ["applies"] for t in guardrails["data"])
    assert ship["data"] and ship["data"][0]["name"].startswith("predicted: ")
    pngs = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert pngs == ["frontier_sessions_vs_applies.png", "guardrails.png", "ship.png", "weights.png"]
    assert all((tmp_path / "png" / p).stat().st_size > 10_000 for p in pngs)
