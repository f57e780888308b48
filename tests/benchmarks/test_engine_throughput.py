"""The engine benchmark's core at toy size: both sides produce exactly the requested tokens per
request, and the same greedy tokens (same weights), batched and unpadded."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import engine_throughput
from benchmarks.engine_bench.models import TINY, hf_twin, load_pair
from benchmarks.engine_bench.ours import engine_config
from benchmarks.engine_bench.requests import LengthScaling, draw_requests

SCALING = LengthScaling(factor=0.1, max_input=48, max_output=12)


@pytest.fixture(scope="module")
def pair():
    torch.set_num_threads(2)
    return load_pair(TINY)


def test_both_sides_produce_the_requested_tokens_and_agree(pair):
    reqs = draw_requests(5, SCALING, seed=3)
    assert len({len(r.prompt) for r in reqs}) > 1 and len({r.output_len for r in reqs}) > 1  # mixed lengths
    point = engine_throughput.run_point(pair, reqs, 2, SCALING.max_model_len)
    for r in reqs:
        assert len(point.ours.tokens[r.request_id]) == r.output_len
        assert point.ours.tokens[r.request_id] == point.padded.tokens[r.request_id]
    assert point.identical_requests == len(reqs)
    assert point.ours.output_tokens == point.padded.output_tokens == sum(r.output_len for r in reqs)
    # padded batches of 2 compute each batch's longest output for both rows
    expected = sum(len(b) * max(r.output_len for r in b) for b in (reqs[0:2], reqs[2:4], reqs[4:5]))
    assert point.padded.computed_tokens == expected
    assert engine_throughput.unpadded_matches(pair, reqs[:2], point.ours.tokens) == 2


def test_twin_holds_the_same_state_dict():
    model = load_pair(TINY).ours
    hf = hf_twin(model)
    ours, theirs = model.state_dict(), hf.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_draw_is_seeded_scaled_and_prefix_stable():
    a = draw_requests(8, SCALING, seed=0)
    assert a[:5] == draw_requests(5, SCALING, seed=0)
    assert a != draw_requests(8, SCALING, seed=1)
    assert all(4 <= len(r.prompt) <= 48 and 4 <= r.output_len <= 12 for r in a)


def test_engine_pool_holds_every_concurrent_request():
    cfg = engine_config(concurrency=3, max_model_len=100)
    assert cfg.num_blocks * cfg.block_size >= 3 * 100 and cfg.max_num_seqs == 3


def test_main_writes_table_json_and_plot(tmp_path, capsys):
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    rc = engine_throughput.main([
        "--model", TINY, "--concurrency", "2", "--requests-per-client", "1", "--length-scale", "0.05",
        "--max-input", "32", "--max-output", "8", "--check-requests", "1",
        "--out", str(out), "--plot", str(png),
    ])
    assert rc == 0
    data = json.loads(out.read_text())
    (point,) = data["points"]
    assert point["concurrency"] == 2 and point["num_requests"] == engine_throughput.MIN_REQUESTS
    assert point["identical_greedy_requests"] == point["num_requests"]
    assert data["unpadded_check"] == {"requests": 1, "identical": 1}
    assert png.stat().st_size > 0
    assert "not measured" in capsys.readouterr().out
