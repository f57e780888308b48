"""Turn a batch's last-token logits into sampled tokens.

Greedy (`SamplingParams.greedy`) takes the argmax. Otherwise logits are divided by the temperature,
filtered by top-k then top-p (the most likely token always stays), and one token is drawn: with a
generator seeded by the request's seed and the token's output position when it has a seed (so its
tokens depend neither on what else is in the batch nor on which instance draws them: a request
migrated or resumed elsewhere draws the same), else with the engine's generator.
Logprobs, when asked for, are those of the model's raw distribution (log-softmax of the logits).

A row that cannot be sampled (its probabilities are not finite, or torch refuses them) fails
alone: its `SampledToken` carries the error instead of a token, and the rest of the batch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence as Seq

import torch

from instances.engine.scheduler import SampledToken
from instances.engine.sequence import Sequence
from instances.types import SamplingParams, TokenLogprob

log = logging.getLogger(__name__)

_MASK64 = (1 << 64) - 1


class SamplingError(Exception):
    """One row's distribution cannot be sampled."""


def _mix64(x: int) -> int:
    """SplitMix64's finalizer: a bijection of 64-bit integers that scatters nearby inputs."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def token_generator(seed: int, position: int) -> torch.Generator:
    """The generator that draws output token `position` of a request seeded `seed`."""
    return torch.Generator().manual_seed(_mix64((seed & _MASK64) ^ _mix64(position)))


def _filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask (to -inf) tokens outside the top-k and outside the smallest top-p nucleus of one row."""
    if top_k > 0 and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        cumulative = torch.cumsum(probs, dim=-1)
        # drop a token when the tokens before it already reach top_p; the first is always kept
        # (a top_p below float32's smallest number rounds to 0 and would drop it)
        drop_sorted = (cumulative - probs) >= top_p
        drop_sorted[0] = False
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _draw(logits: torch.Tensor, sp: SamplingParams, generator: torch.Generator) -> int:
    scaled = _filter_top_k_top_p(logits / sp.temperature, sp.top_k, sp.top_p)
    probs = torch.softmax(scaled, dim=-1)
    if not bool(torch.isfinite(probs).all()):
        raise SamplingError(f"the distribution at temperature {sp.temperature} is not finite")
    return int(torch.multinomial(probs, 1, generator=generator).item())


def _sample_row(logits: torch.Tensor, seq: Sequence, greedy_id: int, generator: torch.Generator) -> int:
    sp = seq.sampling
    if sp.greedy:
        return greedy_id
    if sp.seed is not None:
        generator = token_generator(sp.seed, len(seq.output_token_ids))
    return _draw(logits, sp, generator)


def sample(logits: torch.Tensor, seqs: Seq[Sequence], generator: torch.Generator) -> list[SampledToken]:
    """One token (or one row's error) per row of `logits` ([len(seqs), vocab], float32), in order."""
    greedy_ids = torch.argmax(logits, dim=-1).tolist()
    want_logprobs = any(s.sampling.logprobs is not None for s in seqs)
    logprobs = torch.log_softmax(logits, dim=-1) if want_logprobs else None
    out: list[SampledToken] = []
    for row, seq in enumerate(seqs):
        try:
            token = _sample_row(logits[row], seq, greedy_ids[row], generator)
        except (SamplingError, RuntimeError) as e:  # torch's refusals are RuntimeErrors
            log.warning("sampling request %s failed: %s", seq.request_id, e)
            out.append(SampledToken(-1, error=f"sampling failed: {e}"))
            continue
        lp = None
        sp = seq.sampling
        if logprobs is not None and sp.logprobs is not None:
            row_lp = logprobs[row]
            top: dict[int, float] = {}
            if sp.logprobs > 0:
                values, ids = torch.topk(row_lp, sp.logprobs)
                top = dict(zip(ids.tolist(), values.tolist()))
            lp = TokenLogprob(token_id=token, logprob=float(row_lp[token]), top=top)
        out.append(SampledToken(token, lp))
    return out
