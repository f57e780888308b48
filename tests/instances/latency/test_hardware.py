"""GPU table and lookup."""

import pytest

from flotilla.errors import ConfigError
from instances.latency import GPUS, GPUSpec, gpu_spec


def test_datasheet_figures():
    a10, a100, h100, h200 = (gpu_spec(n) for n in ("A10", "A100-80GB", "H100", "H200"))
    assert (a10.peak_flops, a10.memory_bandwidth, a10.memory_bytes) == (125e12, 600e9, 24 * 2**30)
    assert (a100.peak_flops, a100.memory_bandwidth, a100.memory_bytes) == (312e12, 2039e9, 80 * 2**30)
    assert (h100.peak_flops, h100.memory_bandwidth, h100.memory_bytes) == (1979e12 / 2, 3.35e12, 80 * 2**30)
    assert (h200.peak_flops, h200.memory_bandwidth, h200.memory_bytes) == (1979e12 / 2, 4.8e12, 141 * 2**30)
    assert a10.effective_flops == 125e12 * 0.6
    assert a10.effective_bandwidth == 600e9 * 0.8
    assert a10.step_overhead_s == 0.002


def test_lookup_is_case_insensitive():
    assert gpu_spec("h100") is gpu_spec("H100") is GPUS["h100"]
    assert gpu_spec("a100-80gb").name == "A100-80GB"


def test_unknown_gpu_lists_the_known_names_on_one_line():
    with pytest.raises(ConfigError) as e:
        gpu_spec("V100")
    assert "'V100'" in e.value.message and "A10, A100-80GB, H100, H200" in e.value.message
    assert "\n" not in e.value.message


@pytest.mark.parametrize("field,value", [("compute_efficiency", 0.0), ("bandwidth_efficiency", 1.5),
                                         ("peak_flops", -1.0), ("step_overhead_s", -0.1)])
def test_invalid_spec_is_a_config_error(field, value):
    kwargs = {"peak_flops": 1e12, "memory_bandwidth": 1e9, "memory_bytes": 2**30, field: value}
    with pytest.raises(ConfigError, match=field):
        GPUSpec("X", **kwargs)
