"""`StepShape`: the few numbers of a scheduled batch that a latency model prices.

A step computes, for every scheduled sequence, `num_new_tokens` tokens starting at position `start`.
A latency model does not need the sequences, only these sums:

- a *decode* is a sequence with exactly one new token; its context is `start + 1` (the keys its
  query attends to, its own included);
- anything longer is a *prefill chunk* of `n` new tokens whose context is `start + n`; attention of
  the chunk costs about `n * (start + n)` query-key pairs (counted without halving for the causal
  mask), so a whole prompt of `n` tokens from position 0 contributes `n * n`.

A one-token prefill chunk (a prompt of one token, or the last token of a prompt whose other tokens
came from the prefix cache) is priced as a decode: it costs exactly what a decode of that context
costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from instances.engine.scheduler import ScheduledBatch


@dataclass(frozen=True, slots=True)
class StepShape:
    """What one engine step computes, summed over its sequences.

    prefill_tokens: new tokens of the prefill chunks (sequences with more than one new token).
    prefill_attn: sum over prefill chunks of `new_tokens * (start + new_tokens)`.
    num_prefills: number of prefill chunks.
    decode_batch: number of sequences with exactly one new token.
    decode_context: sum of their context lengths, `start + 1` each.
    """

    prefill_tokens: int = 0
    prefill_attn: int = 0
    num_prefills: int = 0
    decode_batch: int = 0
    decode_context: int = 0

    @property
    def num_tokens(self) -> int:
        """New tokens computed in the step (prefill and decode)."""
        return self.prefill_tokens + self.decode_batch

    @property
    def empty(self) -> bool:
        return self.prefill_tokens == 0 and self.decode_batch == 0

    @classmethod
    def of(cls, batch: ScheduledBatch) -> StepShape:
        """The shape of a scheduled batch (`ScheduledBatch.seqs` items with `.start`, `.num_new_tokens`).

        Called once per simulated step: one pass over the batch, no allocation besides the result.
        """
        p_tokens = p_attn = n_prefills = d_batch = d_context = 0
        for item in batch.seqs:
            n = item.num_new_tokens
            if n == 1:
                d_batch += 1
                d_context += item.start + 1
            else:
                p_tokens += n
                p_attn += n * (item.start + n)
                n_prefills += 1
        return cls(p_tokens, p_attn, n_prefills, d_batch, d_context)

    @classmethod
    def prefill(cls, *prompt_lens: int) -> StepShape:
        """Whole prompts of these lengths from position 0, in one step (each length > 1)."""
        if any(n < 2 for n in prompt_lens):
            raise ValueError(f"prefill prompt lengths must be > 1 (one token is a decode), got {prompt_lens}")
        return cls(sum(prompt_lens), sum(n * n for n in prompt_lens), len(prompt_lens), 0, 0)

    @classmethod
    def decode(cls, batch: int, context: int) -> StepShape:
        """`batch` decodes of `context` tokens each (context counts the new token)."""
        if batch < 1 or context < 1:
            raise ValueError(f"decode batch and context must be >= 1, got batch={batch}, context={context}")
        return cls(0, 0, 0, batch, batch * context)
