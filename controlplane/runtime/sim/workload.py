"""The requests a simulation replays, and the prompt token ids each one gets when it arrives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from controlplane.workload import DEFAULT_VOCAB, TraceRequest, prompt_token_ids


@dataclass(frozen=True)
class SimWorkload:
    """Requests in arrival order (`arrival_s` non-decreasing, checked).

    When any request carries `hash_ids` (a Mooncake trace), prompts are the same deterministic
    token blocks a real benchmark run sends (`controlplane.workload.prompt_token_ids` with `seed`),
    so shared prefixes really are shared in the simulated engines' prefix caches. Otherwise no two
    prompts can share a block, so prompts are runs of a filler id and `shares_prefixes` is False:
    the simulation then turns prefix caching off, which saves hashing every block without
    changing a single scheduling decision (a random prompt never hits the cache).
    """

    requests: Sequence[TraceRequest]
    seed: int = 0
    vocab: tuple[int, int] = DEFAULT_VOCAB
    shares_prefixes: bool = field(init=False)

    def __post_init__(self) -> None:
        previous = 0.0
        for i, r in enumerate(self.requests):
            if r.arrival_s < previous:
                raise ValueError(f"request {i} arrives at {r.arrival_s} s, before request {i - 1}")
            previous = r.arrival_s
        object.__setattr__(self, "shares_prefixes", any(r.hash_ids is not None for r in self.requests))

    def __len__(self) -> int:
        return len(self.requests)

    def prompt(self, index: int) -> list[int]:
        """The prompt token ids of request `index` (built on demand: traces hold millions of tokens)."""
        request = self.requests[index]
        if self.shares_prefixes:
            return prompt_token_ids(request, index, self.seed, self.vocab)
        return [self.vocab[0]] * request.prompt_len
