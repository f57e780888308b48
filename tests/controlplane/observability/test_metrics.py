import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from controlplane.observability.metrics import Metrics, RequestTimer
from controlplane.scheduling.migration import MigrationOrder
from controlplane.scheduling.types import InstanceView
from controlplane.transfer.protocol import TransferOutcome

EXPECTED_FAMILIES = {
    "flotilla_request_ttft_seconds": "histogram",
    "flotilla_request_tpot_seconds": "histogram",
    "flotilla_request_e2e_seconds": "histogram",
    "flotilla_requests_in_flight": "gauge",
    "flotilla_requests": "counter",
    "flotilla_prompt_tokens": "counter",
    "flotilla_generation_tokens": "counter",
    "flotilla_instance_running_requests": "gauge",
    "flotilla_instance_waiting_requests": "gauge",
    "flotilla_instance_free_blocks": "gauge",
    "flotilla_scheduling_decision_seconds": "histogram",
    "flotilla_request_resumes": "counter",
    "flotilla_migrations_started": "counter",
    "flotilla_migrations_committed": "counter",
    "flotilla_migrations_aborted": "counter",
    "flotilla_migration_blocks": "counter",
    "flotilla_migration_bytes": "counter",
    "flotilla_migration_downtime_seconds": "histogram",
    **{  # vLLM V1's names and types, as https://docs.vllm.ai/en/stable/usage/metrics/ lists them
        "vllm:num_requests_running": "gauge",
        "vllm:num_requests_waiting": "gauge",
        "vllm:kv_cache_usage_perc": "gauge",
        "vllm:gpu_cache_usage_perc": "gauge",
        "vllm:time_to_first_token_seconds": "histogram",
        "vllm:inter_token_latency_seconds": "histogram",
        "vllm:e2e_request_latency_seconds": "histogram",
        "vllm:prompt_tokens": "counter",
        "vllm:generation_tokens": "counter",
        "vllm:prefix_cache_queries": "counter",
        "vllm:prefix_cache_hits": "counter",
    },
}
VLLM_LABELS = {"model_name", "engine"}  # every vllm: family's, as vLLM V1 labels them


def _sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def _view(iid: str, running: int, waiting: int, free: int) -> InstanceView:
    return InstanceView(instance_id=iid, running=running, waiting=waiting, free_blocks=free, total_blocks=100,
                        block_size=16, tokens_in_flight=0, queued_prompt_tokens=0)


def test_every_metric_declared_once_with_flotilla_prefix_or_vllm_s_name():
    m = Metrics()
    families = {f.name: f.type for f in m.registry.collect()}
    assert families == EXPECTED_FAMILIES


def test_the_vllm_families_carry_vllm_s_labels():
    m = Metrics()
    m.set_instances([_view("a", 1, 0, 50)], "tiny")
    timer = RequestTimer(m, "tiny", 0.0)
    timer.tokens(0.5, 1, "a")
    timer.tokens(0.7, 2, "a")
    timer.finish(1.0, "stop", prompt_tokens=10, output_tokens=3, cached_tokens=4, instance="a")
    for family in text_string_to_metric_families(m.render().decode()):
        if family.name.startswith("vllm:"):
            assert family.samples and all(set(s.labels) - {"le"} == VLLM_LABELS for s in family.samples), family.name


def test_fresh_registries_do_not_collide():
    a, b = Metrics(), Metrics()
    RequestTimer(a, "m", 0.0)
    assert _sample(a, "flotilla_requests_in_flight", model="m") == 1
    assert _sample(b, "flotilla_requests_in_flight", model="m") is None


def test_uses_a_given_registry():
    registry = CollectorRegistry()
    assert Metrics(registry).registry is registry


def test_timer_records_ttft_tpot_e2e_and_counters():
    m = Metrics()
    timer = RequestTimer(m, "tiny", start_s=10.0)
    assert _sample(m, "flotilla_requests_in_flight", model="tiny") == 1
    timer.tokens(10.5, 1, "i0")
    timer.tokens(10.7, 2, "i0")
    timer.tokens(11.0, 1, "i1")  # resumed elsewhere
    timer.finish(12.5, "length", prompt_tokens=7, output_tokens=5, cached_tokens=3, instance="i1")
    assert _sample(m, "flotilla_requests_in_flight", model="tiny") == 0
    assert _sample(m, "flotilla_request_ttft_seconds_sum", model="tiny") == pytest.approx(0.5)
    assert _sample(m, "flotilla_request_tpot_seconds_sum", model="tiny") == pytest.approx(0.5)  # 2.0 / 4
    assert _sample(m, "flotilla_request_e2e_seconds_sum", model="tiny") == pytest.approx(2.5)
    assert _sample(m, "flotilla_request_e2e_seconds_count", model="tiny") == 1
    assert _sample(m, "flotilla_requests_total", model="tiny", finish_reason="length") == 1
    assert _sample(m, "flotilla_prompt_tokens_total", model="tiny") == 7
    assert _sample(m, "flotilla_generation_tokens_total", model="tiny") == 5
    v = {"model_name": "tiny", "engine": "i1"}
    assert _sample(m, "vllm:time_to_first_token_seconds_sum", **v) == pytest.approx(0.5)
    assert _sample(m, "vllm:e2e_request_latency_seconds_sum", **v) == pytest.approx(2.5)
    assert _sample(m, "vllm:prompt_tokens_total", **v) == 7
    assert _sample(m, "vllm:generation_tokens_total", **v) == 5
    assert (_sample(m, "vllm:prefix_cache_queries_total", **v), _sample(m, "vllm:prefix_cache_hits_total", **v)) == (7, 3)
    # inter-token gaps: two of 0.1 s from i0's second chunk, one of 0.3 s from i1's
    assert _sample(m, "vllm:inter_token_latency_seconds_count", model_name="tiny", engine="i0") == 2
    assert _sample(m, "vllm:inter_token_latency_seconds_sum", model_name="tiny", engine="i0") == pytest.approx(0.2)
    assert _sample(m, "vllm:inter_token_latency_seconds_sum", **v) == pytest.approx(0.3)


def test_single_token_has_no_tpot():
    m = Metrics()
    timer = RequestTimer(m, "tiny", 0.0)
    timer.tokens(0.25, 1, "i0")
    timer.finish(0.25, "stop", prompt_tokens=3, output_tokens=1, instance="i0")
    assert _sample(m, "flotilla_request_ttft_seconds_count", model="tiny") == 1
    assert _sample(m, "flotilla_request_tpot_seconds_count", model="tiny") is None


def test_no_token_records_only_e2e():
    m = Metrics()
    RequestTimer(m, "tiny", 1.0).finish(1.125, "error", prompt_tokens=3, output_tokens=0)
    assert _sample(m, "flotilla_request_e2e_seconds_sum", model="tiny") == 0.125
    assert _sample(m, "flotilla_request_ttft_seconds_count", model="tiny") is None
    assert _sample(m, "flotilla_requests_total", model="tiny", finish_reason="error") == 1


def test_finish_twice_raises():
    timer = RequestTimer(Metrics(), "tiny", 0.0)
    timer.finish(1.0, "stop", 1, 0)
    with pytest.raises(RuntimeError):
        timer.finish(2.0, "stop", 1, 0)


def test_histogram_buckets_span_milliseconds_to_minutes():
    m = Metrics()
    RequestTimer(m, "tiny", 0.0).finish(0.0005, "stop", 1, 0)
    assert _sample(m, "flotilla_request_e2e_seconds_bucket", model="tiny", le="0.001") == 1
    assert _sample(m, "flotilla_request_e2e_seconds_bucket", model="tiny", le="640.0") == 1


def test_set_instances_replaces_gauges():
    m = Metrics()
    m.set_instances([_view("a", 2, 1, 90), _view("b", 0, 0, 100)], "tiny")
    assert _sample(m, "vllm:num_requests_running", model_name="tiny", engine="a") == 2
    assert _sample(m, "vllm:num_requests_waiting", model_name="tiny", engine="a") == 1
    assert _sample(m, "vllm:kv_cache_usage_perc", model_name="tiny", engine="a") == pytest.approx(0.1)
    assert _sample(m, "vllm:gpu_cache_usage_perc", model_name="tiny", engine="b") == 0
    assert _sample(m, "flotilla_instance_running_requests", instance="a") == 2
    assert _sample(m, "flotilla_instance_waiting_requests", instance="a") == 1
    assert _sample(m, "flotilla_instance_free_blocks", instance="b") == 100
    m.set_instances([_view("b", 1, 0, 80)], "tiny")
    assert _sample(m, "flotilla_instance_free_blocks", instance="a") is None
    assert _sample(m, "vllm:num_requests_running", model_name="tiny", engine="a") is None
    assert _sample(m, "flotilla_instance_free_blocks", instance="b") == 80


def test_render_is_prometheus_text():
    m = Metrics()
    m.scheduling_decision_seconds.observe(0.0002)
    families = text_string_to_metric_families(m.render().decode())
    assert {f.name for f in families if not f.name.endswith("_created")} == set(EXPECTED_FAMILIES)
    assert _sample(m, "flotilla_scheduling_decision_seconds_bucket", le="0.00025") == 1


def test_migration_outcomes_are_counted():
    m = Metrics()
    order = MigrationOrder("r", "a", "b", "load")
    m.migration_started(order)
    m.migration_started(order)
    m.migration_finished(TransferOutcome(order, "committed", stages=3, blocks=10, bytes=4096, downtime_s=0.02))
    m.migration_finished(TransferOutcome(order, "refused", "no_room", blocks=0, bytes=0))
    assert _sample(m, "flotilla_migrations_started_total", reason="load") == 2
    assert _sample(m, "flotilla_migrations_committed_total", reason="load") == 1
    assert _sample(m, "flotilla_migrations_aborted_total", result="refused") == 1
    assert _sample(m, "flotilla_migration_blocks_total") == 10
    assert _sample(m, "flotilla_migration_bytes_total") == 4096
    assert _sample(m, "flotilla_migration_downtime_seconds_count") == 1
    assert _sample(m, "flotilla_migration_downtime_seconds_sum") == 0.02
