"""`flotilla profile --quick` end to end on the real tiny-llama engine."""

import csv
import json
import multiprocessing

import pytest

from controlplane.cli import main
from instances.latency import DistServeModel, StepShape, read_rows
from instances.latency.rows import COLUMNS
from instances.profiling.colocate import colocated_load
from instances.profiling.profile import QUICK_GRID


def test_quick_profile_measures_the_grid_and_fits_its_own_rows(tmp_path, capsys):
    out, fit_path = tmp_path / "p.csv", tmp_path / "fit.json"
    assert main(["profile", "--model", "tiny-llama", "--quick", "--out", str(out), "--fit", str(fit_path)]) == 0
    with open(out, newline="") as f:
        assert tuple(next(csv.reader(f))) == COLUMNS
    rows = read_rows(out)
    expected = [StepShape.prefill(t) for t in QUICK_GRID.prefill_lens]
    expected += [StepShape.prefill(*[t] * n) for n, t in QUICK_GRID.multi_prefills]
    expected += [StepShape.decode(b, c) for b in QUICK_GRID.decode_batches for c in QUICK_GRID.decode_contexts]
    assert [r.shape for r in rows] == expected
    assert all(0 < r.seconds < 1 for r in rows)

    model = DistServeModel.load(fit_path)
    assert "tiny-llama" in model.source and "1 thread" in model.source
    assert max(abs(model.step_time(r.shape) - r.seconds) / r.seconds for r in rows) < 0.5
    quality = json.loads(fit_path.read_text())["fit"]
    assert quality["prefill"]["rows"] == 4 and quality["decode"]["rows"] == 6
    # a longer prompt takes longer to prefill than a short one, on any machine
    assert model.step_time(StepShape.prefill(256)) > model.step_time(StepShape.prefill(16))
    captured = capsys.readouterr()
    assert "[profile] 10/10 decode batch 16, context 128" in captured.err
    assert "R^2" in captured.out and str(fit_path) in captured.out


def test_output_in_a_missing_directory_fails_before_measuring(tmp_path, capsys):
    assert main(["profile", "--quick", "--out", str(tmp_path / "nope" / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flotilla: cannot write") and err.count("\n") == 1 and "[profile]" not in err


def test_bad_arguments_and_unknown_model_are_one_line_errors(tmp_path, capsys):
    assert main(["profile", "--quick", "--repeats", "0", "--out", str(tmp_path / "p.csv"),
                 "--fit", str(tmp_path / "f.json")]) == 2
    assert "repeats >= 1" in capsys.readouterr().err
    assert main(["profile", "--quick", "--model", "no-such-model", "--out", str(tmp_path / "p.csv"),
                 "--fit", str(tmp_path / "f.json")]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'no-such-model'" in err and err.count("\n") == 1


def test_colocated_profile_runs_helpers_beside_it_and_stops_them(tmp_path, capsys):
    out, fit_path = tmp_path / "p.csv", tmp_path / "f.json"
    assert main(["profile", "--quick", "--repeats", "1", "--colocated", "1", "--out", str(out),
                 "--fit", str(fit_path)]) == 0
    assert len(read_rows(out)) == len(QUICK_GRID.points())
    assert "1 co-located engine(s)" in json.loads(fit_path.read_text())["source"]
    assert multiprocessing.active_children() == []
    assert main(["profile", "--quick", "--colocated", "-1", "--out", str(out), "--fit", str(fit_path)]) == 2
    assert "colocated >= 0" in capsys.readouterr().err


def test_a_helper_that_cannot_start_is_a_clear_error():
    with pytest.raises(RuntimeError, match="helper 0 did not start"), colocated_load("no-such-model", 1, 1, QUICK_GRID):
        pass
    assert multiprocessing.active_children() == []
