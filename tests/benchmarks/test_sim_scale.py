"""benchmarks/sim_scale.py end to end on its quick points: the table, the JSON, the plot, and the
step-by-step run of one point giving the same results as decode runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import sim_scale


def test_quick_run_writes_results_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "scale.json", tmp_path / "scale.png"
    assert sim_scale.main(["--quick", "--out", str(out), "--plot", str(png)]) == 0
    data = json.loads(out.read_text())
    assert [(p["instances"], p["requests"]) for p in data["points"]] == list(sim_scale.QUICK)
    assert data["identical_results"] is True
    stepwise = data["step_by_step"]
    assert stepwise["max_run_steps"] == 1
    assert stepwise["events"] == stepwise["steps"] + stepwise["requests"]  # one event per step
    runs = data["points"][-1]
    assert runs["steps"] == stepwise["steps"] and runs["events"] < stepwise["events"] / 2
    assert png.stat().st_size > 0
    table = capsys.readouterr().out
    assert "(step by step)" in table and "results identical: yes" in table
