"""benchmarks.sim_loads: the synthetic capacity-planner trace has the stated shape, and one load
level is measured (wall, CPU, steps, events, peak memory) in a fresh process."""

import csv
import statistics

from benchmarks import sim_loads


def test_the_trace_has_the_stated_shape(tmp_path):
    path = sim_loads.write_trace(tmp_path / "t.csv", 4_000, seed=3)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    prompts = [int(r["ContextTokens"]) for r in rows]
    outputs = [int(r["GeneratedTokens"]) for r in rows]
    assert len(rows) == 4_000 and list(rows[0]) == ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
    assert 450 <= statistics.median(prompts) <= 550 and max(prompts) <= 8_000 and min(prompts) >= 1
    assert 115 <= statistics.median(outputs) <= 145 and max(outputs) <= 2_000
    assert sim_loads.write_trace(tmp_path / "u.csv", 4_000, seed=3).read_text() == path.read_text()


def test_a_level_is_measured_in_its_own_process(tmp_path):
    trace = sim_loads.write_trace(tmp_path / "t.csv", 300)
    row = sim_loads.measure_apart(trace, sim_loads.Level("overloaded", 6.0), instances=2, requests=300)
    assert (row["level"], row["instances"], row["requests"], row["completed"]) == ("overloaded", 2, 300, 300)
    assert row["wall_s"] > 0 and row["cpu_s"] > 0 and row["steps"] > 0 and row["events"] > 0
    assert row["peak_rss_mb"] > 50
    assert [lv.rate for lv in sim_loads.levels(100.0)] == [50.0, 100.0, 150.0]
    assert "overloaded" in sim_loads.report([row])


def test_a_trace_longer_than_a_day_of_seconds_loads(tmp_path):
    from controlplane.workload.loaders import load_azure_csv

    trace = load_azure_csv(sim_loads.write_trace(tmp_path / "t.csv", 100_000))
    assert len(trace.requests) == 100_000 and trace.requests[-1].arrival_s == 99_999.0
