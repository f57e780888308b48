"""Placing a prepared request on an instance and relaying its chunks in order, with metrics.

`Dispatcher.start` runs the scheduling framework (timed into flotilla_scheduling_decision_seconds)
and returns a `Run`; `Run.chunks()` streams the instance's chunks (in order and exactly once, as the
`Cluster` contract guarantees) and records the request's metrics when it ends. Closing `chunks()` early (the
client went away) closes the cluster's iterator, which aborts the request on the instance.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import cast

import anyio

from controlplane.api.prepare import Prepared
from controlplane.observability.metrics import Metrics, RequestTimer
from controlplane.runtime.base import Cluster
from controlplane.scheduling.framework import SchedulingFramework
from controlplane.scheduling.types import RequestView
from instances.types import EngineRequest, GenerationChunk


async def aclose_shielded(it: AsyncIterator[object]) -> None:
    """Close an async generator even while the calling task is being cancelled."""
    with anyio.CancelScope(shield=True):
        await cast(AsyncGenerator[object, None], it).aclose()


@dataclass
class Run:
    """One placed request. `chunks()` may be iterated once; it counts the request in flight from its
    first iteration to its end, measuring times from `arrival_s`. `arrival_s` is also the engine
    request's `arrival_time`, so an instance orders its queue (priority, then TTFT deadline
    `arrival_s + slo_ttft_s`, then arrival) on the gateway's clock, the same for every request."""

    request_id: str
    instance_id: str
    prepared: Prepared
    cluster: Cluster
    metrics: Metrics
    model_name: str
    arrival_s: float
    clock: Callable[[], float]
    cached_tokens: int = 0
    output_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        return len(self.prepared.prompt_token_ids)

    async def chunks(self) -> AsyncIterator[GenerationChunk]:
        """The request's chunks in order, ending with the one that has a finish reason.

        Metrics are recorded on the way out, with finish reason "abort" when the consumer stops
        early and "error" when the stream fails (the error propagates).
        """
        timer = RequestTimer(self.metrics, self.model_name, self.arrival_s)
        outcome = "abort"
        try:
            source = self.cluster.generate(
                self.instance_id,
                EngineRequest(
                    request_id=self.request_id,
                    prompt_token_ids=self.prepared.prompt_token_ids,
                    sampling=self.prepared.sampling,
                    arrival_time=self.arrival_s,
                    priority=self.prepared.priority,
                    eos_token_ids=self.prepared.eos_token_ids,
                    slo_ttft_s=self.prepared.slo_ttft_s,
                    slo_tpot_s=self.prepared.slo_tpot_s,
                ),
            )
            try:
                async for chunk in source:
                    self.output_tokens = chunk.first_index + len(chunk.token_ids)
                    self.cached_tokens = max(self.cached_tokens, chunk.num_cached_tokens)
                    if chunk.token_ids:
                        timer.first_token(self.clock())
                    if chunk.finish_reason is not None:
                        outcome = chunk.finish_reason.value
                    yield chunk
                    if chunk.finish_reason is not None:
                        return
            finally:
                await aclose_shielded(source)
        except Exception:
            outcome = "error"
            raise
        finally:
            timer.finish(self.clock(), outcome, self.prompt_tokens, self.output_tokens)


class Dispatcher:
    """Places requests with a scheduling profile and starts their runs on the cluster."""

    def __init__(
        self,
        cluster: Cluster,
        framework: SchedulingFramework,
        profile: str,
        metrics: Metrics,
        model_name: str,
        rng: random.Random,
        clock: Callable[[], float],
    ) -> None:
        framework.profile(profile)  # unknown profile: ConfigError now, not on the first request
        self.cluster = cluster
        self.framework = framework
        self.profile = profile
        self.metrics = metrics
        self.model_name = model_name
        self.rng = rng
        self.clock = clock

    def start(self, request_id: str, prepared: Prepared, arrival_s: float) -> Run:
        """Choose an instance for the request (NoCapacity if none can take it) and return its Run.

        Every decision is timed, failed ones included.
        """
        view = RequestView(
            request_id=request_id,
            num_prompt_tokens=len(prepared.prompt_token_ids),
            max_tokens=prepared.sampling.max_tokens,
            priority=prepared.priority,
            slo_ttft_s=prepared.slo_ttft_s,
            slo_tpot_s=prepared.slo_tpot_s,
        )
        began = self.clock()
        try:
            instance = self.framework.schedule(self.profile, view, self.cluster.views(), self.rng)
        finally:
            self.metrics.scheduling_decision_seconds.observe(self.clock() - began)
        return Run(
            request_id,
            instance.instance_id,
            prepared,
            self.cluster,
            self.metrics,
            self.model_name,
            arrival_s,
            self.clock,
        )
