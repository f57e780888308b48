"""The vLLM metric families Flotilla also exports, so that tools built for vLLM read it as they are.

llm-d's endpoint picker, KEDA scalers and the common Grafana boards read these names (vLLM V1,
https://docs.vllm.ai/en/stable/usage/metrics/ and `vllm/v1/metrics/loggers.py`), with vLLM's label
set: `model_name` (the served model) and `engine` (vLLM's engine index; here the instance id).
They are declared here once and fed by the same events as the `flotilla_` families
(`metrics.RequestTimer`, `Metrics.set_instances`): no figure is computed twice.

- per instance, from its latest snapshot: `vllm:num_requests_running`, `vllm:num_requests_waiting`,
  `vllm:kv_cache_usage_perc` (the fraction of KV blocks in use, 0 to 1) and its older name
  `vllm:gpu_cache_usage_perc`;
- per request, labelled with the instance it finished on: `vllm:time_to_first_token_seconds`,
  `vllm:inter_token_latency_seconds` (each output token after the first: the time since the
  previous chunk over the chunk's tokens), `vllm:e2e_request_latency_seconds`,
  `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`, and the prefix cache in tokens as
  the gateway sees it: `vllm:prefix_cache_queries_total` (prompt tokens) and
  `vllm:prefix_cache_hits_total` (those an instance found cached).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LABELS = ("model_name", "engine")


class VllmMetrics:
    """The vLLM families on `registry`; `buckets` are the latency histograms' (seconds)."""

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        r = registry
        self.num_requests_running = Gauge(
            "vllm:num_requests_running", "Requests in an instance's running batch.", LABELS, registry=r)
        self.num_requests_waiting = Gauge(
            "vllm:num_requests_waiting", "Requests queued on an instance.", LABELS, registry=r)
        self.kv_cache_usage_perc = Gauge(
            "vllm:kv_cache_usage_perc", "Fraction of an instance's KV-cache blocks in use (1 = full).",
            LABELS, registry=r)
        self.gpu_cache_usage_perc = Gauge(
            "vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc under its older name.", LABELS, registry=r)
        self.time_to_first_token_seconds = Histogram(
            "vllm:time_to_first_token_seconds", "Time from request arrival to its first output token.",
            LABELS, buckets=buckets, registry=r)
        self.inter_token_latency_seconds = Histogram(
            "vllm:inter_token_latency_seconds", "Time between output tokens after the first.",
            LABELS, buckets=buckets, registry=r)
        self.e2e_request_latency_seconds = Histogram(
            "vllm:e2e_request_latency_seconds", "Time from request arrival to its end.",
            LABELS, buckets=buckets, registry=r)
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Prompt tokens of finished requests.", LABELS, registry=r)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Output tokens of finished requests.", LABELS, registry=r)
        self.prefix_cache_queries = Counter(
            "vllm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache (those of finished "
            "requests).", LABELS, registry=r)
        self.prefix_cache_hits = Counter(
            "vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache (of finished requests).",
            LABELS, registry=r)

    def instance_gauges(self) -> tuple[Gauge, ...]:
        return (self.num_requests_running, self.num_requests_waiting, self.kv_cache_usage_perc,
                self.gpu_cache_usage_perc)
