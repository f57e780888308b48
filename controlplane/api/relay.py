"""Placing a prepared request on an instance and relaying its chunks in order, with metrics.

`Dispatcher.start` runs the scheduling framework (timed into flotilla_scheduling_decision_seconds)
over the instances' views plus what this gateway dispatched since they were taken
(`PendingDispatches`), and returns a `Run`; `Run.chunks()` streams the instance's chunks (in order
and exactly once, as the `Cluster` contract guarantees) and records the request's metrics when it
ends. Closing `chunks()` early (the client went away) closes the cluster's iterator, which aborts
the request on the instance.

When the instance is lost mid-stream (`InstanceUnavailable`: killed, its step loop failed,
unreachable) or a token goes missing in transit (`StreamBroken`), the run resumes the request on
another instance from its prompt plus the tokens already relayed (`Resumed`: the new instance
recomputes their K/V, its detokenizer continues the text where the client's stopped, and a
seeded request draws what it would have drawn), counted in flotilla_request_resumes_total. The
consumer sees one stream: no error, no token twice or missing. After `max_resumes` resumes the
next loss ends the stream with `InstanceUnavailable` (retryable). A request the engine itself could not continue
(`FinishReason.ERROR`, e.g. its sampling failed) ends with `RequestFailed` at once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

import anyio

from controlplane.api.prepare import Prepared
from controlplane.observability.metrics import Metrics, RequestTimer
from controlplane.runtime.base import Cluster
from controlplane.scheduling.framework import SchedulingFramework
from controlplane.scheduling.pending import PendingDispatches
from controlplane.scheduling.types import RequestView
from flotilla.errors import InstanceUnavailable, RequestFailed, StreamBroken
from instances.types import EngineRequest, FinishReason, GenerationChunk, Resumed, TokenLogprob

log = logging.getLogger(__name__)


async def aclose_shielded(it: AsyncIterator[object]) -> None:
    """Close an async generator even while the calling task is being cancelled."""
    with anyio.CancelScope(shield=True):
        await cast(AsyncGenerator[object, None], it).aclose()


@dataclass
class Run:
    """One placed request. `chunks()` may be iterated once; it counts the request in flight from its
    first iteration to its end, measuring times from `arrival_s`. `arrival_s` is also the engine
    request's `arrival_time`, so an instance orders its queue (priority, then TTFT deadline
    `arrival_s + slo_ttft_s`, then arrival) on the gateway's clock, the same for every request.
    `instance_id` is where it runs now (it changes when it resumes elsewhere)."""

    request_id: str
    instance_id: str
    prepared: Prepared
    dispatcher: Dispatcher
    arrival_s: float
    cached_tokens: int = 0
    output_tokens: int = 0
    resumes: int = 0
    _tokens: list[int] = field(default_factory=list)
    _logprobs: list[TokenLogprob] = field(default_factory=list)
    _sent_chars: int = 0

    @property
    def prompt_tokens(self) -> int:
        return len(self.prepared.prompt_token_ids)

    def _engine_request(self) -> EngineRequest:
        p = self.prepared
        resumed = None
        if self._tokens:
            logprobs = self._logprobs if p.sampling.logprobs is not None else None
            resumed = Resumed(list(self._tokens), logprobs, self._sent_chars)
        return EngineRequest(
            request_id=self.request_id,
            prompt_token_ids=p.prompt_token_ids,
            sampling=p.sampling,
            arrival_time=self.arrival_s,
            priority=p.priority,
            eos_token_ids=p.eos_token_ids,
            slo_ttft_s=p.slo_ttft_s,
            slo_tpot_s=p.slo_tpot_s,
            resumed=resumed,
        )

    def _relayed(self, chunk: GenerationChunk) -> None:
        self._tokens.extend(chunk.token_ids)
        if chunk.logprobs:
            self._logprobs.extend(chunk.logprobs)
        self._sent_chars += len(chunk.text)
        self.output_tokens = chunk.first_index + len(chunk.token_ids)
        self.cached_tokens = max(self.cached_tokens, chunk.num_cached_tokens)

    def _resume(self, error: InstanceUnavailable | StreamBroken) -> None:
        """Place the request again after `error` (RequestFailed past `max_resumes`)."""
        d = self.dispatcher
        lost = self.instance_id
        if self.resumes >= d.max_resumes:
            raise InstanceUnavailable(
                f"request {self.request_id} lost its instance {self.resumes + 1} times "
                f"(last: {error.message}); send it again") from error
        self.resumes += 1
        reason = "instance_lost" if isinstance(error, InstanceUnavailable) else "stream_broken"
        d.metrics.request_resumes_total.labels(reason=reason).inc()
        self.instance_id = d.place(self.request_id, self.prepared, len(self._tokens))
        log.warning("request %s resumes on %s after %d tokens (%s on %s: %s)", self.request_id,
                    self.instance_id, len(self._tokens), reason, lost, error.message)

    async def chunks(self) -> AsyncIterator[GenerationChunk]:
        """The request's chunks in order, ending with the one that has a finish reason.

        Metrics are recorded on the way out, with finish reason "abort" when the consumer stops
        early and "error" when the stream fails (the error propagates).
        """
        d = self.dispatcher
        timer = RequestTimer(d.metrics, d.model_name, self.arrival_s)
        outcome = "abort"
        try:
            while True:
                source = d.cluster.generate(self.instance_id, self._engine_request())
                try:
                    async for chunk in source:
                        if chunk.finish_reason is FinishReason.ERROR:
                            raise RequestFailed(f"the engine could not continue request {self.request_id}: "
                                                f"{chunk.error}")
                        self._relayed(chunk)
                        if chunk.token_ids:
                            timer.tokens(d.clock(), len(chunk.token_ids), self.instance_id)
                        if chunk.finish_reason is not None:
                            outcome = chunk.finish_reason.value
                        yield chunk
                        if chunk.finish_reason is not None:
                            return
                except (InstanceUnavailable, StreamBroken) as e:
                    self._resume(e)
                finally:
                    await aclose_shielded(source)
        except Exception:
            outcome = "error"
            raise
        finally:
            timer.finish(d.clock(), outcome, self.prompt_tokens, self.output_tokens, self.cached_tokens,
                         self.instance_id)


class Dispatcher:
    """Places requests with a scheduling profile and starts their runs on the cluster; a run
    resumes a request whose instance was lost at most `max_resumes` times."""

    def __init__(
        self,
        cluster: Cluster,
        framework: SchedulingFramework,
        profile: str,
        metrics: Metrics,
        model_name: str,
        rng: random.Random,
        clock: Callable[[], float],
        max_resumes: int,
    ) -> None:
        framework.profile(profile)  # unknown profile: ConfigError now, not on the first request
        self.cluster = cluster
        self.framework = framework
        self.profile = profile
        self.metrics = metrics
        self.model_name = model_name
        self.rng = rng
        self.clock = clock
        self.max_resumes = max_resumes
        self.pending = PendingDispatches()

    def place(self, request_id: str, prepared: Prepared, done_tokens: int = 0) -> str:
        """The instance for the request (NoCapacity if none can take it), `done_tokens` of its output
        already produced (a resume: they are recomputed with the prompt). Every decision is timed,
        failed ones included."""
        num_tokens = len(prepared.prompt_token_ids) + done_tokens
        view = RequestView(
            request_id=request_id,
            num_prompt_tokens=num_tokens,
            max_tokens=prepared.sampling.max_tokens - done_tokens,
            priority=prepared.priority,
            slo_ttft_s=prepared.slo_ttft_s,
            slo_tpot_s=prepared.slo_tpot_s,
        )
        began = self.clock()
        try:
            instance = self.framework.schedule(self.profile, view, self.pending.apply(self.cluster.views()),
                                               self.rng)
        finally:
            self.metrics.scheduling_decision_seconds.observe(self.clock() - began)
        self.pending.record(instance, num_tokens)
        return instance.instance_id

    def start(self, request_id: str, prepared: Prepared, arrival_s: float) -> Run:
        """Place the request (`place`) and return its Run."""
        return Run(request_id, self.place(request_id, prepared), prepared, self, arrival_s)
