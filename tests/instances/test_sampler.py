"""Sampling: greedy, seeded reproducibility independent of the batch, top-k/top-p, logprobs."""

import math

import torch

from instances.engine.sampler import sample
from instances.engine.sequence import Sequence
from instances.types import EngineRequest, SamplingParams


def seq(sp: SamplingParams, rid="r") -> Sequence:
    return Sequence.from_request(EngineRequest(rid, [1], sp), order=0, eos_token_ids=())


LOGITS = torch.tensor([[0.0, 3.0, 1.0, 2.9, -1.0]])


def test_greedy_takes_argmax():
    assert sample(LOGITS, [seq(SamplingParams(temperature=0))], torch.Generator())[0].token_id == 1


def test_top_k_one_is_greedy():
    sp = SamplingParams(temperature=1.0, top_k=1)
    assert {sample(LOGITS, [seq(sp)], torch.Generator().manual_seed(i))[0].token_id for i in range(20)} == {1}


def test_top_p_keeps_only_the_nucleus():
    # probabilities of tokens 1 and 3 are ~0.45 and ~0.41: top_p 0.5 keeps 1 and 3 only
    sp = SamplingParams(temperature=1.0, top_p=0.5)
    drawn = {sample(LOGITS, [seq(sp)], torch.Generator().manual_seed(i))[0].token_id for i in range(200)}
    assert drawn == {1, 3}


def test_seeded_sampling_is_independent_of_the_batch():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    sp = SamplingParams(temperature=1.0, seed=1234)
    alone = [sample(logits[1:2], [seq(sp)], torch.Generator())[0].token_id for _ in range(1)]
    s = seq(sp)
    others = [seq(SamplingParams(temperature=1.0), "x"), s, seq(SamplingParams(temperature=1.0), "y")]
    in_batch = sample(logits, others, torch.Generator().manual_seed(99))[1].token_id
    assert alone == [in_batch]


def test_logprobs_are_raw_log_softmax():
    sp = SamplingParams(temperature=0, logprobs=2)
    out = sample(LOGITS, [seq(sp)], torch.Generator())[0]
    lp = torch.log_softmax(LOGITS[0], dim=-1)
    assert math.isclose(out.logprob.logprob, float(lp[1]), rel_tol=1e-6)
    assert list(out.logprob.top) == [1, 3]
    assert math.isclose(out.logprob.top[3], float(lp[3]), rel_tol=1e-6)
