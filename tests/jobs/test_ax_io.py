"""Launch from an Ax Client, refit for real, export the history to Ax JSON, and read it back with Ax's own loader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from ax.analysis.plotly.arm_effects import ArmEffectsPlot
from ax.analysis.plotly.bandit_rollout import BanditRollout
from ax.analysis.plotly.constraint_feasibility import ConstraintFeasibilityPlot
from ax.api.client import Client
from ax.api.configs import RangeParameterConfig
from ax.core.batch_trial import BatchTrial
from ax.core.trial_status import TrialStatus

from bayesopt.ax_history import ax_pareto_frontier, trial_of_version
from jobs.ax_io import export_ax, launch_from_ax
from jobs.cli import main
from param_store import EmbeddedRedis, ParamStore
from tests.jobs.analyst_helpers import SMALL_POLICY, START, run_refits


def analyst_client(name: str = "axfeed") -> Client:
    """What an analyst writes in Ax: two objectives, a relative guardrail, a baseline."""
    client = Client()
    client.configure_experiment(name=name, parameters=[
        RangeParameterConfig(name="x1", bounds=(0.0, 2.0), parameter_type="float"),
        RangeParameterConfig(name="x2", bounds=(0.01, 10.0), parameter_type="float", scaling="log"),
    ])
    client.configure_optimization(objective="sessions, applies", outcome_constraints=["dwell >= 0.99 * baseline"])
    client.attach_baseline({"x1": 1.0, "x2": 1.0}, arm_name="control")
    return client


RATES = {"sessions": "rate", "applies": "rate", "dwell": "rate"}


@pytest.fixture
def exported(redis_server: EmbeddedRedis, store: ParamStore, tmp_path: Path) -> tuple[ParamStore, Path]:
    launch_from_ax(store, analyst_client(), metric_kinds=RATES, overrides={"policy": SMALL_POLICY}, now=START)
    run_refits(redis_server, store, "axfeed", 3)
    path = tmp_path / "axfeed.json"
    export_ax(store, "axfeed", path)
    return store, path


def test_the_exported_history_loads_in_ax_with_the_stores_trials_weights_and_data(exported) -> None:
    store, path = exported
    client = Client.load_from_json_file(str(path))
    experiment = client._experiment
    history = store.history("axfeed")
    assert len(history) == 4 and len(experiment.trials) == 4  # the launch design and three refits
    trial_index = trial_of_version(experiment)
    assert sorted(trial_index) == [v for v, _ in history]
    data = experiment.lookup_data().df
    stats = store.observations("axfeed")
    for version, _ in history:
        dist = store.load_version("axfeed", version)
        trial = experiment.trials[trial_index[version]]
        assert isinstance(trial, BatchTrial)
        weights = {a.name: w for a, w in trial.normalized_arm_weights().items()}
        assert weights == pytest.approx({a.arm_id: a.weight for a in dist.arms}, rel=1e-12, abs=1e-15)
        assert trial.run_metadata["weights"] == {a.arm_id: a.weight for a in dist.arms}
        assert {a.name: a.parameters for a in trial.arms} == {a.arm_id: dict(a.values) for a in dist.arms}
        rows = stats[stats["version"] == version]
        ax_rows = data[data["trial_index"] == trial.index]
        assert len(ax_rows) == len(rows)
        for _, row in rows.iterrows():
            ax_row = ax_rows[(ax_rows["arm_name"] == row["arm_id"]) & (ax_rows["metric_name"] == row["metric"])].iloc[0]
            mean = row["sum"] / row["count"]
            sem = math.sqrt((row["sum_sq"] - row["sum"] * mean) / (row["count"] - 1) / row["count"])
            assert ax_row["mean"] == pytest.approx(mean, abs=1e-10)  # Ax rounds to 10 decimals
            assert ax_row["sem"] == pytest.approx(sem, abs=1e-10)
        expected = TrialStatus.COMPLETED if len(rows) else TrialStatus.RUNNING
        assert trial.status == expected
    assert experiment.status_quo.name == "control"


def test_an_analyst_uses_summarize_the_analyses_and_the_pareto_frontier_without_further_steps(exported) -> None:
    store, path = exported
    client = Client.load_from_json_file(str(path))
    summary = client.summarize()
    assert {"sessions", "applies", "dwell", "x1", "x2", "arm_name", "trial_index"} <= set(summary.columns)
    observed_arms = store.observations("axfeed").groupby(["version"])["arm_id"].nunique().sum()
    assert len(summary) == sum(len(t.arms) for t in client._experiment.trials.values()) >= observed_arms
    cards = client.compute_analyses([ArmEffectsPlot(metric_name="sessions", use_model_predictions=False),
                                     ConstraintFeasibilityPlot(use_model_predictions=False), BanditRollout()],
                                    display=False)
    assert [type(c).__name__ for c in cards] == ["PlotlyAnalysisCard"] * 3
    frontier = ax_pareto_frontier(client, use_model_predictions=False)
    assert frontier, "the reference thresholds keep the observed frontier from coming back empty"
    for parameters, means, trial_index, arm in frontier:
        assert set(means) >= {"sessions", "applies"}
        assert dict(client._experiment.trials[trial_index].arms_by_name[arm].parameters) == parameters


def test_the_cli_exports_and_launches_from_an_ax_file(exported, tmp_path: Path, monkeypatch, redis_server, capsys) -> None:
    store, path = exported
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("BAYESOPT_NAMESPACE", store.namespace)
    out = tmp_path / "again.json"
    assert main(["export-ax", "axfeed", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["_type"] == "Client"
    assert main(["launch", "--from-ax", str(out), "--name", "axcopy", "--json"]) == 0
    assert store.load_spec("axcopy").guardrails == store.load_spec("axfeed").guardrails
    assert store.load_spec("axcopy").metrics == store.load_spec("axfeed").metrics  # kinds travel in the file
    assert main(["launch", "--from-ax", str(tmp_path / "missing.json"), "--name", "x"]) == 2
    assert "cannot read" in capsys.readouterr().err
