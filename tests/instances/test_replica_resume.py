"""A request resumed on another replica from its prompt and the output it had streamed (its first
instance was lost): the same tokens and text, greedy and seeded, and one request's failed sampling
ends that request alone."""

from __future__ import annotations

import pytest
import torch

from instances.engine import sampler
from instances.engine.sequence import Sequence
from instances.types import EngineRequest, FinishReason, Resumed, SamplingParams
from tests.instances.test_replica_migration import Collector, loaded, replica, requests, run_alone  # noqa: F401


class Chunks(Collector):
    """A Collector that also keeps each request's chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: dict[str, list] = {}

    def take(self, chunks) -> None:
        super().take(chunks)
        for c in chunks:
            self.chunks.setdefault(c.request_id, []).append(c)


def reference(loaded, reqs) -> Chunks:  # noqa: F811
    out = run_alone(loaded, reqs, Chunks())
    assert isinstance(out, Chunks)
    return out


def _cut(reqs: list[EngineRequest], ref: Chunks, at: int) -> list[EngineRequest]:
    """Each request as a gateway resumes it once the chunks holding its first `at` tokens arrived."""
    out = []
    for r in reqs:
        got = [c for c in ref.chunks[r.request_id] if c.first_index + len(c.token_ids) <= at]
        toks = [t for c in got for t in c.token_ids]
        out.append(EngineRequest(r.request_id, r.prompt_token_ids, r.sampling,
                                 resumed=Resumed(toks, None, sum(len(c.text) for c in got))))
    return out


@pytest.mark.parametrize("at", [1, 7, 19])
def test_resumed_requests_continue_token_for_token(loaded, at):  # noqa: F811
    reqs = requests(6, seed=5)  # greedy and seeded (every third)
    ref = reference(loaded, reqs)
    other = replica(loaded, "other")
    got = Collector()
    for r in _cut(reqs, ref, at):
        got.tokens[r.request_id] = list(r.resumed.output_token_ids)
        got.text[r.request_id] = "".join(c.text for c in ref.chunks[r.request_id]
                                         if c.first_index + len(c.token_ids) <= at)
        other.add(r)
    while other.has_work():
        got.take(other.step())
    assert got.tokens == ref.tokens
    assert got.text == ref.text
    assert got.finished == {r.request_id for r in reqs}
    assert other.engine.stats().free_blocks == other.engine.config.num_blocks


def test_a_resume_that_already_ended_is_refused(loaded):  # noqa: F811
    r = replica(loaded, "x")
    req = EngineRequest("done", [5, 6, 7], SamplingParams(max_tokens=2, temperature=0),
                        resumed=Resumed([9, 9], None, 0))
    with pytest.raises(ValueError, match="already ended it"):
        r.add(req)


def test_a_failed_sample_ends_its_request_alone(loaded, monkeypatch):  # noqa: F811
    reqs = requests(6, seed=8)
    ref = run_alone(loaded, reqs)
    poisoned = EngineRequest("poison", [4, 5, 6], SamplingParams(max_tokens=30, temperature=0.7, seed=666))
    real_draw = sampler._draw

    def draw(logits, sp, generator):
        if sp.seed == 666:
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        return real_draw(logits, sp, generator)

    monkeypatch.setattr(sampler, "_draw", draw)
    r = replica(loaded, "r")
    out = Collector()
    errors = {}
    for req in [*reqs[:3], poisoned, *reqs[3:]]:
        r.add(req)
    while r.has_work():
        chunks = r.step()
        errors.update({c.request_id: (c.finish_reason, c.error) for c in chunks if c.error})
        out.take(chunks)
    assert errors == {"poison": (FinishReason.ERROR,
                                 "sampling failed: probability tensor contains either `inf`, `nan` or element < 0")}
    assert out.tokens.pop("poison") == []
    assert out.tokens == ref.tokens
    assert r.engine.stats().free_blocks == r.engine.config.num_blocks


def _row_seq(sp: SamplingParams) -> Sequence:
    return Sequence.from_request(EngineRequest("r", [1], sp), order=0, eos_token_ids=())


LOGITS = torch.tensor([[0.0, 3.0, 1.0, 2.9, -1.0]])


def test_a_temperature_below_1e_5_is_greedy_and_a_tiny_top_p_keeps_the_top_token():
    for sp in (SamplingParams(temperature=1e-300), SamplingParams(temperature=9.9e-6),
               SamplingParams(temperature=1.0, top_p=5e-324)):
        drawn = {sampler.sample(LOGITS, [_row_seq(sp)], torch.Generator().manual_seed(i))[0] for i in range(20)}
        assert drawn == {sampler.SampledToken(1)}, sp


def test_a_distribution_that_is_not_finite_fails_its_row_only():
    logits = torch.tensor([[0.0, 3.0e38, 1.0, 3.0e38, -1.0], [0.0, 3.0, 1.0, 2.9, -1.0]])
    hot = SamplingParams(temperature=1e-5)  # not greedy; 3e38 / 1e-5 overflows
    out = sampler.sample(logits, [_row_seq(hot), _row_seq(SamplingParams(temperature=0))], torch.Generator())
    assert out[0].error == "sampling failed: the distribution at temperature 1e-05 is not finite"
    assert out[1] == sampler.SampledToken(1)


def test_seeded_draws_depend_on_seed_and_position_only():
    sp = SamplingParams(temperature=1.0, seed=2**64 - 1)
    logits = torch.randn(1, 1000, generator=torch.Generator().manual_seed(0))
    a, b = _row_seq(sp), _row_seq(sp)
    b.output_token_ids = [7] * 5  # b is at position 5
    first = sampler.sample(logits, [a], torch.Generator().manual_seed(1))[0]
    assert first == sampler.sample(logits, [a], torch.Generator().manual_seed(2))[0]
    a.output_token_ids = [3] * 5
    assert sampler.sample(logits, [a], torch.Generator())[0] == sampler.sample(logits, [b], torch.Generator())[0]
    # different positions draw differently (over 20 positions, not all equal)
    draws = set()
    for pos in range(20):
        a.output_token_ids = [0] * pos
        draws.add(sampler.sample(logits, [a], torch.Generator())[0].token_id)
    assert len(draws) > 5


@pytest.mark.parametrize("bad, message", [
    (dict(seed=2**80), "seed must fit in 64 bits"),
    (dict(seed=-(2**63) - 1), "seed must fit in 64 bits"),
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(temperature=float("inf")), "temperature must be a finite number"),
    (dict(top_p=float("nan")), "top_p must be in (0, 1]"),
])
def test_out_of_range_sampling_is_refused_at_the_engine(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        SamplingParams(**bad).validate()


def test_token_ids_outside_the_vocabulary_are_refused_before_they_reach_the_model(loaded):  # noqa: F811
    r = replica(loaded, "v")
    vocab = loaded.model.config.vocab_size
    for prompt, resumed in (([5, vocab], None), ([5, -1], None), ([5, 6], Resumed([7, vocab + 3], None, 0))):
        req = EngineRequest("bad", prompt, SamplingParams(max_tokens=8, temperature=0), resumed=resumed)
        with pytest.raises(ValueError, match=r"token id -?\d+ is out of range \(the vocabulary has \d+ tokens\)"):
            r.add(req)
    assert not r.has_work()


@pytest.mark.parametrize("at", [2, 9, 15])
def test_a_resumed_request_stops_at_its_stop_string_as_it_would_have(loaded, at):  # noqa: F811
    plain = requests(1, seed=21)[0]  # greedy
    text = run_alone(loaded, [plain]).text[plain.request_id]
    stop = text[len(text) // 2: len(text) // 2 + 3]  # a stop string met mid-way
    req = EngineRequest("s", plain.prompt_token_ids,
                        SamplingParams(max_tokens=plain.sampling.max_tokens, temperature=0, stop=(stop,),
                                       ignore_eos=True))
    ref = reference(loaded, [req])
    assert ref.chunks["s"][-1].finish_reason is FinishReason.STOP and stop not in ref.text["s"]
    assert at < len(ref.tokens["s"])  # the resume point comes before the stop string (a fixed seed)
    (resumed,) = _cut([req], ref, at)
    other = replica(loaded, "other")
    other.add(resumed)
    got = Collector()
    got.tokens["s"] = list(resumed.resumed.output_token_ids)
    got.text["s"] = "".join(c.text for c in ref.chunks["s"] if c.first_index + len(c.token_ids) <= at)
    while other.has_work():
        got.take(other.step())
    assert (got.tokens, got.text, got.finished) == (ref.tokens, ref.text, {"s"})
