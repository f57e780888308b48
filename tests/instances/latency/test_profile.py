"""`flotilla profile --quick` end to end on the real tiny-llama engine."""

import csv
import json

from controlplane.cli import main
from instances.latency import DistServeModel, StepShape, read_rows
from instances.latency.profile import QUICK_GRID
from instances.latency.rows import COLUMNS


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
