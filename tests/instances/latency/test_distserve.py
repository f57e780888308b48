"""DistServeModel: step time by hand, the coefficients file, and the least-squares fit."""

import json

import pytest

from flotilla.errors import ConfigError
from instances.latency import Coefficients, DistServeModel, ProfileRow, StepShape, fit

MODEL = DistServeModel(Coefficients(1e-3, 2e-5, 3e-8), Coefficients(4e-3, 5e-7, 6e-5), source="by hand")


def test_step_time_of_each_part_and_of_a_mixed_step():
    prefill = StepShape(prefill_tokens=300, prefill_attn=200 * 200 + 100 * 150, num_prefills=2)
    assert MODEL.step_time(prefill) == pytest.approx(1e-3 + 2e-5 * 300 + 3e-8 * 55_000)
    decode = StepShape.decode(8, 1000)
    assert MODEL.step_time(decode) == pytest.approx(4e-3 + 5e-7 * 8000 + 6e-5 * 8)
    mixed = StepShape(300, 55_000, 2, 8, 8000)
    assert MODEL.step_time(mixed) == pytest.approx(MODEL.step_time(prefill) + MODEL.step_time(decode))
    with pytest.raises(ValueError, match="empty"):
        MODEL.step_time(StepShape())


def test_save_load_round_trip_and_file_format(tmp_path):
    path = tmp_path / "fit.json"
    MODEL.save(path)
    assert json.loads(path.read_text()) == {
        "form": "distserve", "prefill": {"a": 1e-3, "b": 2e-5, "c": 3e-8},
        "decode": {"a": 4e-3, "b": 5e-7, "c": 6e-5}, "source": "by hand"}
    assert DistServeModel.load(path) == MODEL
    assert MODEL.describe()["kind"] == "distserve"


GOOD = {"form": "distserve", "prefill": {"a": 1e-3, "b": 1e-5, "c": 1e-8}, "decode": {"a": 1e-3, "b": 1e-7, "c": 1e-5}}


@pytest.mark.parametrize("content,expected", [
    ("{not json", "is not JSON"),
    ("[1, 2]", "\"form\" must be 'distserve'"),
    (json.dumps({**GOOD, "form": "vidur"}), "got 'vidur'"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "decode"}), "\"decode\" must be an object with keys a, b, c"),
    (json.dumps({**GOOD, "prefill": {"a": 1, "b": 2}}), "\"prefill\" must be an object with keys a, b, c"),
    (json.dumps({**GOOD, "decode": {"a": "1", "b": 2, "c": 3}}), "must be numbers"),
    (json.dumps({**GOOD, "decode": {"a": True, "b": 2, "c": 3}}), "must be numbers"),
    (json.dumps({**GOOD, "prefill": {"a": -1e-3, "b": 0, "c": 0}}), "must be finite, >= 0 and not all 0"),
    (json.dumps({**GOOD, "decode": {"a": 0, "b": 0, "c": 0}}), "not all 0"),
    (json.dumps({**GOOD, "prefil": {}}), "unknown keys ['prefil']"),
    (json.dumps({**GOOD, "source": 3}), "\"source\" must be a string"),
])
def test_malformed_coefficients_files_are_one_line_config_errors(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as e:
        DistServeModel.load(path)
    assert expected in e.value.message and str(path) in e.value.message and "\n" not in e.value.message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read latency coefficients .*missing.json"):
        DistServeModel.load(tmp_path / "missing.json")


def synthetic_rows(model: DistServeModel) -> list[ProfileRow]:
    rows = [ProfileRow.of(StepShape.prefill(*[t] * n), model.step_time(StepShape.prefill(*[t] * n)))
            for n, t in ((1, 16), (1, 128), (1, 1024), (2, 64), (4, 256))]
    rows += [ProfileRow.of(StepShape.decode(b, c), model.step_time(StepShape.decode(b, c)))
             for b in (1, 8, 64) for c in (16, 1024)]
    return rows


def test_fit_recovers_known_coefficients_exactly():
    result = fit(synthetic_rows(MODEL), source="synthetic")
    for part in ("prefill", "decode"):
        got, want = getattr(result.model, part), getattr(MODEL, part)
        assert (got.a, got.b, got.c) == pytest.approx((want.a, want.b, want.c), rel=1e-9)
    assert result.prefill.rows == 5 and result.decode.rows == 6
    assert result.prefill.r2 == pytest.approx(1.0) and result.decode.max_rel_error < 1e-9
    assert result.model.source == "synthetic"


def test_fit_takes_the_median_of_repeats_so_one_slow_step_does_not_move_it():
    rows = synthetic_rows(MODEL)
    slow = ProfileRow(**{**rows[0].__dict__, "seconds": rows[0].seconds * 5})
    result = fit([*rows, rows[0], slow])  # three repeats of the first shape, one of them 5x slower
    assert result.model.prefill.a == pytest.approx(MODEL.prefill.a, rel=1e-9)


def test_fit_keeps_coefficients_non_negative():
    # times that a line with a negative intercept would fit exactly: t = 1e-6 * tokens - 1e-5
    rows = [ProfileRow.of(StepShape.prefill(t), 1e-6 * t - 1e-5) for t in (16, 64, 256, 1024)]
    rows += synthetic_rows(MODEL)[5:]
    result = fit(rows)
    p = result.model.prefill
    assert min(p.a, p.b, p.c) >= 0 and p.a == 0
    assert all(result.model.step_time(r.shape) > 0 for r in rows)


def test_fit_needs_shapes_that_determine_the_coefficients():
    decodes = synthetic_rows(MODEL)[5:]
    with pytest.raises(ValueError, match="at least 3 distinct shapes"):
        fit([ProfileRow.of(StepShape.prefill(16), 1e-3), *decodes])
    same_batch = [ProfileRow.of(StepShape.decode(4, c), 1e-3 * c) for c in (16, 64, 256)]  # batch constant
    with pytest.raises(ValueError, match="collinear"):
        fit([*synthetic_rows(MODEL)[:5], *same_batch])


def test_fit_result_saves_the_quality_and_loads_as_the_model(tmp_path):
    result = fit(synthetic_rows(MODEL))
    path = tmp_path / "fit.json"
    result.save(path)
    data = json.loads(path.read_text())
    assert set(data["fit"]) == {"prefill", "decode"} and data["fit"]["decode"]["rows"] == 6
    assert DistServeModel.load(path) == result.model
