"""`flotilla sim sweep` on a real local Ray: 3 policies x 4 rates x 2 seeds as Ray tasks on every
core, each point's results exactly those of the same point run alone, its summary and plot, and a
bad grid refused in one line before Ray starts."""

from __future__ import annotations

import json
import os

import pytest

from controlplane.cli import main
from controlplane.observability.serving_metrics import SLO
from controlplane.runtime.sim.experiment import Experiment, run_experiment
from controlplane.runtime.sim.sweep import grid, run_sweep, summary_row
from controlplane.workload import WorkloadSpec

BASE = Experiment(WorkloadSpec(trace="sharegpt", num_requests=120, arrival="gamma", cv=2.0),
                  instances=4, slo=SLO(ttft_ms=2000, tpot_ms=100))


def test_a_sweep_runs_every_point_on_ray_as_it_would_run_alone(tmp_path):
    points = grid(["round-robin", "least-requests", "infaas"], [4.0, 8.0, 12.0, 16.0], [0, 1])
    rows, workers = run_sweep(BASE, points, tmp_path, show_progress=False)
    assert workers >= min(2, os.cpu_count() or 1)  # every core (both, here)
    for point, row in zip(points, rows):
        alone = run_experiment(point.experiment(BASE)).results
        assert json.loads((tmp_path / f"{point.name}.json").read_text()) == json.loads(json.dumps(alone))
        assert row == summary_row(point, alone)
    assert json.loads((tmp_path / "summary.json").read_text()) == rows
    assert {(r["policy"], r["rate"], r["seed"]) for r in rows} == {(p.policy, p.rate, p.seed) for p in points}


def test_the_command_writes_the_table_and_plot(tmp_path, capsys):
    assert main(["sim", "sweep", "--trace", "sharegpt", "--policies", "round-robin,infaas", "--rates", "5,10",
                 "--num-requests", "60", "--instances", "2", "--slo-ttft-ms", "2000", "--quiet",
                 "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4 points on" in out and "infaas" in out
    assert (tmp_path / "summary.png").stat().st_size > 0
    assert len(list(tmp_path.glob("*_rate*_seed0.json"))) == 4


def test_an_unknown_policy_is_one_line_and_exit_2_before_ray_starts(capsys, tmp_path):
    assert main(["sim", "sweep", "--trace", "sharegpt", "--policies", "infaas,nope", "--rates", "1",
                 "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
    assert not list(tmp_path.iterdir())


def test_a_bad_rate_list_is_an_argparse_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "sweep", "--trace", "sharegpt", "--policies", "infaas", "--rates", "1,x"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "argument --rates: not a comma-separated list of floats: '1,x'")
