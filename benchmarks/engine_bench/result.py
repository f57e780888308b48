"""What one side's run of one concurrency point produced, and the compared point."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.engine_bench.requests import BenchRequest


@dataclass(frozen=True)
class SideResult:
    """One side's run over a list of requests.

    `tokens`: request id -> its generated token ids (exactly its `output_len` of them, checked by
    `check_counts`). `computed_tokens`: output positions the side computed, useful or not (a padded
    batch computes `batch size x longest output`). `tpot_s`: per request with two or more tokens,
    (time of its last token - time of its first) / (tokens - 1); empty when the side cannot observe it.
    """

    elapsed_s: float
    tokens: dict[str, list[int]]
    computed_tokens: int
    tpot_s: tuple[float, ...] = ()

    def check_counts(self, requests: list[BenchRequest], side: str) -> None:
        """Raise RuntimeError unless every request got exactly its `output_len` tokens."""
        for r in requests:
            got = len(self.tokens.get(r.request_id, []))
            if got != r.output_len:
                raise RuntimeError(
                    f"{side}: {r.request_id} produced {got} tokens, {r.output_len} were requested"
                )

    @property
    def output_tokens(self) -> int:
        return sum(len(t) for t in self.tokens.values())

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.elapsed_s

    @property
    def mean_tpot_s(self) -> float | None:
        return sum(self.tpot_s) / len(self.tpot_s) if self.tpot_s else None


@dataclass(frozen=True)
class PointResult:
    """Both sides at one concurrency, over the same requests."""

    concurrency: int
    num_requests: int
    prompt_tokens: int
    ours: SideResult
    padded: SideResult
    identical_requests: int  # requests whose greedy tokens are equal on both sides

    @property
    def speedup(self) -> float:
        """Our output tokens/s over transformers' (both count the same requested tokens)."""
        return self.ours.tokens_per_s / self.padded.tokens_per_s
