"""What each simulated request did, on the virtual clock: the same `RequestTimeline` a real
benchmark run records from its streamed chunks, so one metrics module serves both."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from controlplane.observability.serving_metrics import RequestTimeline
from instances.types import Priority, RequestDelta


@dataclass(slots=True)
class _Live:
    prompt_len: int
    send_s: float
    chunk_s: array = field(default_factory=lambda: array("d"))
    output_tokens: int = 0
    error: str | None = None
    priority: int = Priority.NORMAL


class Recorder:
    """Collects token times per request. Every delta of a simulated step is one streamed chunk."""

    def __init__(self) -> None:
        self._requests: dict[str, _Live] = {}
        self.finished = 0
        self.cached_prompt_tokens = 0  # prompt tokens served from a prefix cache, over finished requests

    def sent(self, request_id: str, prompt_len: int, send_s: float, priority: int = Priority.NORMAL) -> None:
        if request_id in self._requests:
            raise ValueError(f"request id {request_id!r} recorded twice")
        self._requests[request_id] = _Live(prompt_len, send_s, priority=priority)

    def rejected(self, request_id: str, error: str) -> None:
        """The request failed before reaching an engine (it counts against SLO attainment)."""
        self._requests[request_id].error = error
        self.finished += 1

    def tokens(self, deltas: list[RequestDelta], now: float) -> None:
        """Record the chunks of one finished step at virtual time `now`."""
        requests = self._requests
        for delta in deltas:
            live = requests[delta.request_id]
            live.chunk_s.append(now)
            live.output_tokens += len(delta.token_ids)
            if delta.finish_reason is not None:
                self.finished += 1
                self.cached_prompt_tokens += delta.num_cached_tokens

    def run_tokens(self, request_ids: list[str], ends: list[float]) -> None:
        """Record the steps of a decode run: each request got one token at each of `ends` (and
        none finished: a run's last step is recorded by `tokens`)."""
        requests = self._requests
        for request_id in request_ids:
            live = requests[request_id]
            live.chunk_s.extend(ends)
            live.output_tokens += len(ends)

    def timelines(self) -> list[RequestTimeline]:
        """One timeline per sent request, in the order they were placed (the arrival order, unless
        `SimConfig.dispatch_delays_s` gives requests different delays)."""
        return [
            RequestTimeline(
                prompt_len=r.prompt_len,
                output_tokens=r.output_tokens,
                send_s=r.send_s,
                chunk_s=r.chunk_s,  # type: ignore[arg-type]  # a Sequence[float], stored compactly
                success=r.error is None and r.output_tokens > 0,
                error=r.error,
            )
            for r in self._requests.values()
        ]

    def priorities(self) -> list[int]:
        """Each sent request's priority class, in the order of `timelines()`."""
        return [r.priority for r in self._requests.values()]
