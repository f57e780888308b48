"""build_latency_model: roofline by name, or DistServe from a coefficients file."""

import pytest

from flotilla.errors import ConfigError
from instances.latency import (
    Coefficients,
    DistServeModel,
    LatencyModel,
    RooflineModel,
    StepShape,
    build_latency_model,
)


def test_roofline_by_name():
    model = build_latency_model("h100", "llama-3-8b")
    assert isinstance(model, RooflineModel) and isinstance(model, LatencyModel)
    assert model.gpu.name == "H100" and model.model.name == "llama-3-8b"
    assert build_latency_model("A10").model.name == "llama-2-7b"  # type: ignore[attr-defined]


def test_coefficients_file_gives_a_distserve_model(tmp_path):
    saved = DistServeModel(Coefficients(1e-3, 1e-6, 1e-9), Coefficients(1e-3, 1e-8, 1e-5), "test")
    path = tmp_path / "fit.json"
    saved.save(path)
    model = build_latency_model("A10", "llama-2-7b", coefficients=str(path))
    assert model == saved and isinstance(model, LatencyModel)
    assert model.step_time(StepShape.decode(2, 10)) == pytest.approx(1e-3 + 1e-8 * 20 + 1e-5 * 2)


def test_unknown_names_and_bad_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="known GPUs"):
        build_latency_model("TPU", "llama-2-7b")
    with pytest.raises(ConfigError, match="known models"):
        build_latency_model("A10", "llama-9")
    with pytest.raises(ConfigError, match="cannot read"):
        build_latency_model("A10", coefficients=str(tmp_path / "none.json"))
