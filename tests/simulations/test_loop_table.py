"""The closed-loop table of ``bayesopt bench multitask --loop-table``: per run and per simulator, against ``none``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from simulations.bench_multitask import LOOP_COLUMNS, loop_table


def _write(folder: Path, simulator: str, regrets: list[float], models: list[dict] | None = None) -> None:
    out = folder / f"scarce-{simulator}"
    (out / "runs" / "scarce").mkdir(parents=True)
    rows = []
    for seed, regret in enumerate(regrets):
        rows.append({"policy": "gp", "seed": seed, "stream": 0, **{c: 1.0 for c in LOOP_COLUMNS},
                     "cumulative_regret_pct_h": regret, "hours_to_1pct": float("inf") if seed else 12.0})
        if models is not None:
            hours = [{"models": m} for m in models]
            (out / "runs" / "scarce" / f"gp-seed{seed}-stream0.json").write_text(json.dumps({"hours": hours}))
    pd.DataFrame(rows).to_csv(out / "summaries.csv", index=False)


def test_regret_is_compared_with_none_on_the_same_seeds_and_multitask_hours_are_counted(tmp_path: Path) -> None:
    _write(tmp_path, "none", [100.0, 200.0])
    _write(tmp_path, "good", [50.0, 250.0], models=[{"a": "multitask", "b": "online"}, {"a": "multitask", "b": "multitask"}, {}])
    doc = loop_table(tmp_path)
    good = {r["seed"]: r for r in doc["runs"] if r["simulator"] == "good"}
    assert good[0]["regret_vs_none"] == pytest.approx(-0.5) and good[1]["regret_vs_none"] == pytest.approx(0.25)
    assert good[0]["multitask_hours"] == 3 and good[0]["metric_hours"] == 4
    summary = {g["simulator"]: g for g in doc["summary"]}
    assert summary["good"]["regret_vs_none"] == pytest.approx(300.0 / 300.0 - 1)  # ratio of means, not mean of ratios
    assert summary["good"]["runs_within_1pct"] == 1 and summary["good"]["multitask_hours"] == 6
    assert summary["none"]["metric_hours"] == 0
    table = (tmp_path / "table.md").read_text()
    assert "| scarce | good | 2 | 150.0 | +0.0% | 1 of 2 |" in table and "| scarce | none | 0 | 100.0 | +0% |" in table
