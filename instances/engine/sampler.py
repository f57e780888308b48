"""Turn a batch's last-token logits into sampled tokens.

Greedy (temperature 0) takes the argmax. Otherwise logits are divided by the temperature, filtered
by top-k then top-p, and one token is drawn: with the request's own generator when it has a seed
(so its tokens do not depend on what else is in the batch), else with the engine's generator.
Logprobs, when asked for, are those of the model's raw distribution (log-softmax of the logits).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import torch

from instances.engine.scheduler import SampledToken
from instances.engine.sequence import Sequence
from instances.types import SamplingParams, TokenLogprob


def _filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask (to -inf) tokens outside the top-k and outside the smallest top-p nucleus of one row."""
    if top_k > 0 and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        cumulative = torch.cumsum(probs, dim=-1)
        # drop a token when the tokens before it already reach top_p (the first is always kept)
        drop_sorted = (cumulative - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _draw(logits: torch.Tensor, sp: SamplingParams, generator: torch.Generator) -> int:
    scaled = _filter_top_k_top_p(logits / sp.temperature, sp.top_k, sp.top_p)
    probs = torch.softmax(scaled, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def sample(logits: torch.Tensor, seqs: Seq[Sequence], generator: torch.Generator) -> list[SampledToken]:
    """One token per row of `logits` ([len(seqs), vocab], float32), in order."""
    greedy_ids = torch.argmax(logits, dim=-1).tolist()
    want_logprobs = any(s.sampling.logprobs is not None for s in seqs)
    logprobs = torch.log_softmax(logits, dim=-1) if want_logprobs else None
    out: list[SampledToken] = []
    for row, seq in enumerate(seqs):
        sp = seq.sampling
        if sp.greedy:
            token = greedy_ids[row]
        else:
            token = _draw(logits[row], sp, seq.generator or generator)
        lp = None
        if logprobs is not None and sp.logprobs is not None:
            row_lp = logprobs[row]
            top: dict[int, float] = {}
            if sp.logprobs > 0:
                values, ids = torch.topk(row_lp, sp.logprobs)
                top = dict(zip(ids.tolist(), values.tolist()))
            lp = TokenLogprob(token_id=token, logprob=float(row_lp[token]), top=top)
        out.append(SampledToken(token, lp))
    return out
