"""Every Prometheus metric Flotilla's gateway exports, declared once: the `flotilla_*` families here,
and vLLM's names for the tools built for vLLM (`vllm_metrics.py`), fed by the same events.

`Metrics(registry)` declares the full set on one `CollectorRegistry` (a fresh one by default, so tests
and several apps in one process never collide). `RequestTimer` turns the times of one request's
events, passed in by the caller (no clock is read here), into TTFT, TPOT and E2E observations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from controlplane.observability.vllm_metrics import VllmMetrics
from controlplane.scheduling.migration import MigrationOrder
from controlplane.scheduling.types import InstanceView

if TYPE_CHECKING:  # only the type is needed here, and the migrator's module imports Ray
    from controlplane.transfer.protocol import TransferOutcome

# Latency buckets from 1 ms to 10 minutes (request phases span that range on CPU and GPU).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    320.0,
    640.0,
)
# Scheduling decisions are pure CPU work over a snapshot: 10 us to 100 ms.
DECISION_BUCKETS_S: tuple[float, ...] = (
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    1e-2,
    2.5e-2,
    0.1,
)


class Metrics:
    """The gateway's metrics on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.request_ttft_seconds = Histogram(
            "flotilla_request_ttft_seconds",
            "Time from request arrival to its first output token.",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.request_tpot_seconds = Histogram(
            "flotilla_request_tpot_seconds",
            "Mean time per output token after the first: (e2e - ttft) / (output_tokens - 1).",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.request_e2e_seconds = Histogram(
            "flotilla_request_e2e_seconds",
            "Time from request arrival to its end.",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.requests_in_flight = Gauge(
            "flotilla_requests_in_flight",
            "Requests accepted and not yet finished.",
            ["model"],
            registry=r,
        )
        self.requests_total = Counter(
            "flotilla_requests_total",
            "Finished requests by finish reason (stop, length, abort, error).",
            ["model", "finish_reason"],
            registry=r,
        )
        self.prompt_tokens_total = Counter(
            "flotilla_prompt_tokens_total",
            "Prompt tokens of finished requests.",
            ["model"],
            registry=r,
        )
        self.generation_tokens_total = Counter(
            "flotilla_generation_tokens_total",
            "Output tokens of finished requests.",
            ["model"],
            registry=r,
        )
        self.instance_running_requests = Gauge(
            "flotilla_instance_running_requests",
            "Requests in an instance's running batch.",
            ["instance"],
            registry=r,
        )
        self.instance_waiting_requests = Gauge(
            "flotilla_instance_waiting_requests",
            "Requests queued on an instance.",
            ["instance"],
            registry=r,
        )
        self.instance_free_blocks = Gauge(
            "flotilla_instance_free_blocks",
            "Free KV-cache blocks of an instance.",
            ["instance"],
            registry=r,
        )
        self.migrations_started_total = Counter(
            "flotilla_migrations_started_total",
            "Live migrations started, by the rule that ordered them (load, defrag, priority, drain, admin).",
            ["reason"],
            registry=r,
        )
        self.migrations_committed_total = Counter(
            "flotilla_migrations_committed_total",
            "Live migrations committed on their destination, by the rule that ordered them.",
            ["reason"],
            registry=r,
        )
        self.migrations_aborted_total = Counter(
            "flotilla_migrations_aborted_total",
            "Live migrations aborted before their commit (refused, finished, timeout, failed).",
            ["result"],
            registry=r,
        )
        self.migration_blocks_total = Counter(
            "flotilla_migration_blocks_total", "KV blocks copied by live migrations.", registry=r
        )
        self.migration_bytes_total = Counter(
            "flotilla_migration_bytes_total", "Bytes of KV pages copied by live migrations.", registry=r
        )
        self.migration_downtime_seconds = Histogram(
            "flotilla_migration_downtime_seconds",
            "Time a committed migration's request was stopped (suspend on the source to commit's answer).",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.request_resumes_total = Counter(
            "flotilla_request_resumes_total",
            "Requests resumed on another instance from the output they had streamed, by why their "
            "stream broke (instance_lost: the instance died or became unreachable; stream_broken: "
            "a token went missing in transit).",
            ["reason"],
            registry=r,
        )
        self.scheduling_decision_seconds = Histogram(
            "flotilla_scheduling_decision_seconds",
            "Time the scheduling framework took to place a request.",
            buckets=DECISION_BUCKETS_S,
            registry=r,
        )
        self.vllm = VllmMetrics(r, LATENCY_BUCKETS_S)

    # ---- migrations (a `controlplane.controller.migrator.MigrationObserver`) ----------------------
    def migration_started(self, order: MigrationOrder) -> None:
        self.migrations_started_total.labels(reason=order.reason).inc()

    def migration_finished(self, outcome: TransferOutcome) -> None:
        if outcome.committed:
            self.migrations_committed_total.labels(reason=outcome.order.reason).inc()
            self.migration_downtime_seconds.observe(outcome.downtime_s)
        else:
            self.migrations_aborted_total.labels(result=outcome.result).inc()
        self.migration_blocks_total.inc(outcome.blocks)
        self.migration_bytes_total.inc(outcome.bytes)

    def set_instances(self, views: Sequence[InstanceView], model: str) -> None:
        """Replace the per-instance gauges with `views` of instances serving `model` (instances no
        longer present disappear)."""
        for gauge in (
            self.instance_running_requests,
            self.instance_waiting_requests,
            self.instance_free_blocks,
            *self.vllm.instance_gauges(),
        ):
            gauge.clear()
        for v in views:
            self.instance_running_requests.labels(instance=v.instance_id).set(v.running)
            self.instance_waiting_requests.labels(instance=v.instance_id).set(v.waiting)
            self.instance_free_blocks.labels(instance=v.instance_id).set(v.free_blocks)
            labels = {"model_name": model, "engine": v.instance_id}
            used = 1.0 - v.free_blocks / v.total_blocks if v.total_blocks else 0.0
            self.vllm.num_requests_running.labels(**labels).set(v.running)
            self.vllm.num_requests_waiting.labels(**labels).set(v.waiting)
            self.vllm.kv_cache_usage_perc.labels(**labels).set(used)
            self.vllm.gpu_cache_usage_perc.labels(**labels).set(used)

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class RequestTimer:
    """Records one request's metrics from event times (seconds on any one monotonic clock).

    Creating it counts the request in flight; `tokens(t, n, instance)` notes a chunk of `n` output
    tokens from `instance` arriving at `t` (the first marks the first token; each later one is an
    inter-token gap); `finish(t, ...)` must be called exactly once and records everything else.
    """

    def __init__(self, metrics: Metrics, model: str, start_s: float) -> None:
        self._metrics = metrics
        self._model = model
        self._start_s = start_s
        self._first_token_s: float | None = None
        self._last_token_s = start_s
        self._itl: tuple[str, Any] | None = None  # the instance and its inter-token histogram child
        self._finished = False
        metrics.requests_in_flight.labels(model=model).inc()

    def tokens(self, now_s: float, n: int, instance: str) -> None:
        """`n` (> 0) output tokens from `instance` arrived at `now_s`; each after the first is one
        inter-token gap of (time since the previous chunk) / (tokens in this chunk)."""
        if self._first_token_s is None:
            self._first_token_s = now_s
            n -= 1
        if n > 0:
            if self._itl is None or self._itl[0] != instance:  # one label lookup per instance, not per chunk
                self._itl = (instance, self._metrics.vllm.inter_token_latency_seconds.labels(
                    model_name=self._model, engine=instance))
            itl = self._itl[1]
            gap = (now_s - self._last_token_s) / n
            for _ in range(n):
                itl.observe(gap)
        self._last_token_s = now_s

    def finish(self, now_s: float, finish_reason: str, prompt_tokens: int, output_tokens: int,
               cached_tokens: int = 0, instance: str = "") -> None:
        """Record E2E, TTFT (if a token came), TPOT (if more than one did), counters; leave in-flight.
        `instance` is where the request ended, `cached_tokens` its prompt tokens found cached.

        Raises RuntimeError when called twice.
        """
        if self._finished:
            raise RuntimeError("RequestTimer.finish called twice")
        self._finished = True
        m, model = self._metrics, self._model
        v = m.vllm
        labels = {"model_name": model, "engine": instance}
        m.requests_in_flight.labels(model=model).dec()
        m.requests_total.labels(model=model, finish_reason=finish_reason).inc()
        m.prompt_tokens_total.labels(model=model).inc(prompt_tokens)
        m.generation_tokens_total.labels(model=model).inc(output_tokens)
        v.prompt_tokens.labels(**labels).inc(prompt_tokens)
        v.generation_tokens.labels(**labels).inc(output_tokens)
        v.prefix_cache_queries.labels(**labels).inc(prompt_tokens)
        v.prefix_cache_hits.labels(**labels).inc(cached_tokens)
        e2e = now_s - self._start_s
        m.request_e2e_seconds.labels(model=model).observe(e2e)
        v.e2e_request_latency_seconds.labels(**labels).observe(e2e)
        if self._first_token_s is not None:
            ttft = self._first_token_s - self._start_s
            m.request_ttft_seconds.labels(model=model).observe(ttft)
            v.time_to_first_token_seconds.labels(**labels).observe(ttft)
            if output_tokens > 1:
                m.request_tpot_seconds.labels(model=model).observe((e2e - ttft) / (output_tokens - 1))
