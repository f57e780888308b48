"""Model shapes: parameter counts (published totals), KV bytes, KV capacity."""

import pytest

from flotilla.errors import ConfigError
from instances.latency import gpu_spec, kv_capacity_blocks, model_spec


def test_llama_2_7b_matches_the_published_parameter_count():
    m = model_spec("llama-2-7b")
    layer = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096  # q k v o, gate up down, two RMSNorms
    assert m.layer_dense_params == layer == 202_383_360
    total = 32 * layer + 4096 + 2 * 32000 * 4096  # layers, final norm, embedding + untied LM head
    assert m.total_params == total == 6_738_415_616  # Llama-2-7b-hf
    assert m.active_params == total
    assert m.body_active_params == 32 * layer + 4096
    assert m.kv_bytes_per_token == 2 * 32 * 32 * 128 * 2 == 524_288  # 0.5 MiB a token
    assert m.weight_bytes == 2 * total


def test_gqa_models():
    llama3 = model_spec("llama-3-8b")
    layer = 2 * 4096 * 4096 + 2 * 4096 * 8 * 128 + 3 * 4096 * 14336 + 2 * 4096
    assert llama3.total_params == 32 * layer + 4096 + 2 * 128256 * 4096 == 8_030_261_248
    assert llama3.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2
    llama70 = model_spec("llama-2-70b")
    layer = 2 * 8192 * 8192 + 2 * 8192 * 8 * 128 + 3 * 8192 * 28672 + 2 * 8192
    assert llama70.total_params == 80 * layer + 8192 + 2 * 32000 * 8192 == 68_976_648_192
    assert llama70.kv_bytes_per_token == 2 * 80 * 8 * 128 * 2 == 327_680
    assert model_spec("llama-2-13b").total_params == 13_015_864_320


def test_qwen_moe_total_and_active_parameters():
    m = model_spec("qwen-moe")
    attention = 4 * 2048 * 2048 + 3 * 2048  # projections and q/k/v biases
    expert = 3 * 2048 * 1408
    dense = attention + 2 * 2048 + 2048 * 60 + 3 * 2048 * 5632 + 2048  # norms, router, shared expert, its gate
    assert m.expert_params == expert and m.layer_dense_params == dense
    embeddings = 2 * 151936 * 2048
    assert m.total_params == 24 * (dense + 60 * expert) + 2048 + embeddings == 14_315_784_192
    assert m.active_params == 24 * (dense + 4 * expert) + 2048 + embeddings == 2_689_173_504
    assert round(m.total_params / 1e9, 1) == 14.3 and round(m.active_params / 1e9, 1) == 2.7  # "A2.7B"
    assert m.kv_bytes_per_token == 2 * 24 * 16 * 128 * 2


def test_lookup_and_unknown_model():
    assert model_spec("LLAMA-2-7B") is model_spec("llama-2-7b")
    with pytest.raises(ConfigError) as e:
        model_spec("gpt-5")
    assert "'gpt-5'" in e.value.message and "llama-2-7b, llama-3-8b, llama-2-13b, llama-2-70b, qwen-moe" in e.value.message


def test_kv_capacity_of_7b_on_a100():
    usable = int(80 * 2**30 * 0.9)
    free = usable - 2 * 6_738_415_616
    assert kv_capacity_blocks(gpu_spec("A100-80GB"), model_spec("llama-2-7b"), 16) == free // (16 * 524_288) == 7609


def test_70b_does_not_fit_on_an_a10():
    with pytest.raises(ConfigError) as e:
        kv_capacity_blocks(gpu_spec("A10"), model_spec("llama-2-70b"), 16)
    assert "llama-2-70b does not fit on one A10" in e.value.message and "138.0 GB" in e.value.message


@pytest.mark.parametrize("kwargs", [{"block_size": 0}, {"block_size": 16, "memory_utilization": 1.2}])
def test_kv_capacity_argument_errors(kwargs):
    with pytest.raises(ConfigError):
        kv_capacity_blocks(gpu_spec("H100"), model_spec("llama-2-7b"), **kwargs)
