"""benchmarks.health_under_load end to end on tiny-llama, shortened: both phases probe /health,
the load phase's prompts are tokenized and refused, and the table, JSON and plot come out."""

import json

from benchmarks.health_under_load import main, percentile


def test_percentile_is_nearest_rank():
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


def test_quick_run_writes_table_json_and_plot(tmp_path, capsys):
    out, png = tmp_path / "h.json", tmp_path / "h.png"
    assert main(["--model", "tiny-llama", "--prompt-bytes", "100000", "--clients", "2", "--seconds", "1",
                 "--out", str(out), "--plot", str(png)]) == 0
    phases = json.loads(out.read_text())["phases"]
    assert [(p["phase"], p["clients"], p["failed"]) for p in phases] == [("idle", 0, 0), ("load", 2, 0)]
    assert phases[0]["prompts_per_s"] == 0 and phases[1]["prompts_per_s"] > 0
    assert all(p["probes"] == len(p["latencies_ms"]) > 10 for p in phases)
    assert "P99 under load / idle" in capsys.readouterr().out
    assert png.stat().st_size > 0
