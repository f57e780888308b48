"""RooflineModel against hand-computed FLOPs and bytes."""

import json

import pytest

from instances.latency import RooflineModel, StepShape, gpu_spec, model_spec

LLAMA7_LAYER = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096  # dense params of one layer
LLAMA7_BODY = 32 * LLAMA7_LAYER + 4096  # all layers and the final norm
LM_HEAD = 32000 * 4096
KV_TOKEN = 2 * 32 * 32 * 128 * 2  # bytes of K and V of one token, all layers
ATTN = 4 * 32 * 32 * 128  # attention FLOPs per (query, key) pair, all layers


def a10_7b() -> RooflineModel:
    return RooflineModel(gpu_spec("A10"), model_spec("llama-2-7b"))


def test_decode_of_one_sequence_on_a10_is_bandwidth_bound():
    shape = StepShape.decode(1, 512)
    flops = 2 * LLAMA7_BODY * 1 + 2 * LM_HEAD * 1 + ATTN * 512
    moved = 2 * (32 * LLAMA7_LAYER + 4096 + LM_HEAD) + KV_TOKEN * (512 + 1)  # weights, KV read, KV written
    compute_s, memory_s = flops / (125e12 * 0.6), moved / (600e9 * 0.8)
    terms = a10_7b().terms(shape)
    assert terms.flops == flops and terms.bytes == moved
    assert terms.bound == "memory" and memory_s > 100 * compute_s
    assert a10_7b().step_time(shape) == pytest.approx(0.002 + memory_s, rel=1e-12)
    assert 0.029 < a10_7b().step_time(shape) < 0.031  # 13.5 GB of weights at 480 GB/s


def test_prefill_of_2048_tokens_is_compute_bound():
    shape = StepShape.prefill(2048)
    flops = 2 * LLAMA7_BODY * 2048 + 2 * LM_HEAD * 1 + ATTN * 2048 * 2048
    moved = 2 * (32 * LLAMA7_LAYER + 4096 + LM_HEAD) + KV_TOKEN * (2048 + 2048)  # context read + written
    terms = a10_7b().terms(shape)
    assert terms.flops == flops and terms.bytes == moved
    assert terms.bound == "compute"
    assert a10_7b().step_time(shape) == pytest.approx(0.002 + flops / (125e12 * 0.6), rel=1e-12)


def test_chunked_prefill_reads_its_context_and_mixed_steps_add_up():
    # a chunk of 50 tokens at position 100 (context 150) beside 3 decodes of context 10
    shape = StepShape(prefill_tokens=50, prefill_attn=50 * 150, num_prefills=1, decode_batch=3, decode_context=30)
    flops = 2 * LLAMA7_BODY * 53 + 2 * LM_HEAD * 4 + ATTN * (50 * 150 + 30)
    moved = 2 * (32 * LLAMA7_LAYER + 4096 + LM_HEAD) + KV_TOKEN * (30 + 150 + 53)
    terms = a10_7b().terms(shape)
    assert terms.flops == flops and terms.bytes == pytest.approx(moved, rel=1e-15)


def test_moe_weights_read_follow_the_experts_touched():
    qwen = RooflineModel(gpu_spec("H100"), model_spec("qwen-moe"))
    assert qwen.experts_touched(1) == pytest.approx(4.0)
    assert qwen.experts_touched(2) == pytest.approx(60 * (1 - (56 / 60) ** 2))
    assert 59.9 < qwen.experts_touched(100) < 60
    dense = 4 * 2048 * 2048 + 3 * 2048 + 2 * 2048 + 2048 * 60 + 3 * 2048 * 5632 + 2048
    expert = 3 * 2048 * 1408
    kv = 2 * 24 * 16 * 128 * 2
    moved = 2 * (24 * dense + 2048 + 151936 * 2048) + 2 * 24 * expert * 4 + kv * (100 + 1)
    assert qwen.terms(StepShape.decode(1, 100)).bytes == pytest.approx(moved, rel=1e-12)
    # a decode batch of 64 touches nearly every expert: much more than 4 experts' bytes
    assert qwen.terms(StepShape.decode(64, 100)).bytes > 10 * 2 * 24 * expert * 4
    dense_model = RooflineModel(gpu_spec("H100"), model_spec("llama-2-7b"))
    assert dense_model.experts_touched(1000) == 0.0


def test_faster_gpus_are_faster():
    for shape in (StepShape.decode(1, 512), StepShape.decode(64, 1024), StepShape.prefill(2048)):
        times = [RooflineModel(gpu_spec(g), model_spec("llama-2-7b")).step_time(shape)
                 for g in ("A10", "A100-80GB", "H100")]
        assert times == sorted(times, reverse=True) and times[0] > 2 * times[2]


def test_batching_decodes_is_cheaper_per_token_and_time_grows_with_work():
    m = a10_7b()
    assert m.step_time(StepShape.decode(32, 512)) < 2 * m.step_time(StepShape.decode(1, 512))
    assert m.step_time(StepShape.decode(8, 1024)) > m.step_time(StepShape.decode(8, 128))
    assert m.step_time(StepShape.prefill(4096)) > 1.9 * m.step_time(StepShape.prefill(2048))


def test_empty_shape_raises_and_describe_is_json():
    with pytest.raises(ValueError, match="empty"):
        a10_7b().step_time(StepShape())
    described = json.loads(json.dumps(a10_7b().describe()))
    assert described["kind"] == "roofline" and described["gpu"]["name"] == "A10"
    assert described["model"]["name"] == "llama-2-7b"
