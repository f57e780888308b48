"""The simulation loop on hand-made workloads whose timelines can be computed by hand."""

from __future__ import annotations

import pytest

from controlplane.observability.serving_metrics import SLO
from controlplane.runtime.sim.config import SimConfig
from controlplane.runtime.sim.loop import Simulation
from controlplane.runtime.sim.results import results
from controlplane.runtime.sim.workload import SimWorkload
from controlplane.scheduling.registry import ProfileConfig
from controlplane.workload import TraceRequest, WorkloadSpec, build_workload
from instances.engine.config import EngineConfig
from instances.latency.distserve import Coefficients, DistServeModel

# prefill: 0.1 s + 1 ms per token; decode: 10 ms + 1 ms per sequence (contexts cost nothing)
LATENCY = DistServeModel(Coefficients(0.1, 0.001, 0.0), Coefficients(0.01, 0.0, 0.001))
ENGINE = EngineConfig(block_size=16, num_blocks=64, max_num_batched_tokens=512, max_num_seqs=8, max_model_len=512)
ROUND_ROBIN = ProfileConfig(filters=("healthy",), scorers={}, picker="round_robin")
POWER_OF_TWO = ProfileConfig(filters=("healthy",), scorers={"load": 1.0}, picker="power_of_two")


def simulate(requests, instances=1, profile=ROUND_ROBIN, engine=ENGINE, seed=0, slo=None):
    config = SimConfig(instances=instances, policy="p", profile=profile, engine=engine, latency=LATENCY,
                       seed=seed, slo=slo)
    sim = Simulation(config, SimWorkload(requests))
    run = sim.run()
    return run, results(config, run)


def chunks(run):
    return [list(t.chunk_s) for t in run.recorder.timelines()]


def test_one_request_by_hand() -> None:
    run, r = simulate([TraceRequest(0.0, 100, 3)])
    # prefill 0.1 + 100 * 0.001 = 0.2 s, then two decodes of 0.01 + 0.001 s each
    assert chunks(run) == [pytest.approx([0.2, 0.211, 0.222])]
    assert r["ttft"]["p50"] == pytest.approx(0.2)
    assert r["tpot"]["mean"] == pytest.approx(0.011)
    assert r["itl"]["p99"] == pytest.approx(0.011)
    assert r["e2e"]["p50"] == pytest.approx(0.222)
    assert r["duration_s"] == pytest.approx(0.222)
    assert (r["requests"], r["completed"], r["failed"], r["preemptions"]) == (1, 1, 0, 0)
    assert r["throughput_tokens_per_s"] == pytest.approx(3 / 0.222)
    assert r["instance_seconds"] == pytest.approx(0.222)
    assert r["busy_fraction"] == pytest.approx(1.0)


def test_arrival_during_a_step_joins_the_next_step() -> None:
    run, _ = simulate([TraceRequest(0.0, 100, 3), TraceRequest(0.05, 50, 2)])
    # step 1 (0 -> 0.2): prefill A. Step 2 (0.2 -> 0.361): A decodes, B prefills (50 tokens):
    # 0.1 + 0.05 + 0.011. Step 3 (-> 0.373): both decode (0.01 + 2 * 0.001). A is done.
    a, b = chunks(run)
    assert a == pytest.approx([0.2, 0.361, 0.373])
    assert b == pytest.approx([0.361, 0.373])
    assert run.recorder.timelines()[1].ttft_s == pytest.approx(0.311)


def test_round_robin_alternates_instances() -> None:
    reqs = [TraceRequest(0.0, 100, 2), TraceRequest(0.0, 100, 2), TraceRequest(0.0, 100, 2)]
    run, _ = simulate(reqs, instances=2)
    # requests 0 and 2 go to instance 0, which starts on request 0 the moment it arrives, so request
    # 2 prefills in the next step beside request 0's decode (0.1 + 0.1 + 0.011 s); request 1 is alone;
    # request 2 then decodes alone (0.011 s)
    assert chunks(run) == [pytest.approx([0.2, 0.411]), pytest.approx([0.2, 0.211]), pytest.approx([0.411, 0.422])]
    assert [inst.busy_s for inst in run.instances] == pytest.approx([0.422, 0.211])


def test_prompts_longer_than_the_context_fail_and_count_against_attainment() -> None:
    reqs = [TraceRequest(0.0, 100, 3), TraceRequest(0.0, 600, 3)]
    run, r = simulate(reqs, slo=SLO(ttft_ms=1000, tpot_ms=100))
    assert (r["completed"], r["failed"]) == (1, 1)
    assert "600 tokens" in (run.recorder.timelines()[1].error or "")
    assert r["slo_attainment"] == 0.5


def test_small_pool_preempts_and_still_finishes_every_request() -> None:
    engine = EngineConfig(block_size=16, num_blocks=12, max_num_batched_tokens=512, max_num_seqs=8,
                          max_model_len=192)
    reqs = [TraceRequest(0.0, 60, 100) for _ in range(3)]
    run, r = simulate(reqs, engine=engine)
    assert r["preemptions"] > 0
    assert [t.output_tokens for t in run.recorder.timelines()] == [100, 100, 100]
    assert all(inst.engine.scheduler.blocks.num_free_blocks == 12 for inst in run.instances)


def azure_slice(n=300):
    return build_workload(WorkloadSpec(trace="azure-conv", num_requests=n, rate_scale=40.0, length_scale=0.1))


def test_same_seed_same_results_and_the_seed_matters() -> None:
    reqs = azure_slice()
    _, first = simulate(reqs, instances=4, profile=POWER_OF_TWO, seed=7)
    _, again = simulate(reqs, instances=4, profile=POWER_OF_TWO, seed=7)
    _, other = simulate(reqs, instances=4, profile=POWER_OF_TWO, seed=8)
    assert first == again
    assert first["ttft"] != other["ttft"]


def test_every_request_gets_its_trace_output_length() -> None:
    reqs = azure_slice()
    run, r = simulate(reqs, instances=4)
    assert r["completed"] == len(reqs)
    assert [t.output_tokens for t in run.recorder.timelines()] == [q.output_len for q in reqs]
    assert run.engine.enable_prefix_caching is False  # random prompts cannot share a block


def test_shared_prefixes_hit_the_prefix_cache() -> None:
    shared = (1, 2)  # two 512-token blocks every request starts with
    reqs = [TraceRequest(float(i), 1100, 4, hash_ids=(*shared, 10 + i)) for i in range(3)]
    engine = EngineConfig(block_size=16, num_blocks=512, max_num_batched_tokens=2048, max_model_len=2048)
    run, r = simulate(reqs, engine=engine)
    assert run.engine.enable_prefix_caching is True
    # the first request computes everything; the next two find the 1024 shared tokens cached
    assert r["cached_prompt_tokens"] == 2 * 1024
    assert r["prompt_tokens"] == 3 * 1100


def test_a_simulation_runs_once() -> None:
    config = SimConfig(1, "p", ROUND_ROBIN, ENGINE, LATENCY)
    sim = Simulation(config, SimWorkload([TraceRequest(0.0, 10, 1)]))
    sim.run()
    with pytest.raises(RuntimeError, match="runs once"):
        sim.run()


def test_workload_must_be_in_arrival_order() -> None:
    with pytest.raises(ValueError, match="before request 0"):
        SimWorkload([TraceRequest(1.0, 10, 1), TraceRequest(0.5, 10, 1)])


def test_dispatch_delay_places_later_and_counts_from_the_arrival() -> None:
    # both placements 0.2 s after their arrivals: the steps of
    # test_arrival_during_a_step_joins_the_next_step, 0.2 s later; latencies still count from the arrival
    reqs = [TraceRequest(0.0, 100, 3), TraceRequest(0.05, 50, 2)]
    config = SimConfig(1, "p", ROUND_ROBIN, ENGINE, LATENCY, dispatch_delay_s=0.2)
    run = Simulation(config, SimWorkload(reqs)).run()
    a, b = run.recorder.timelines()
    assert list(a.chunk_s) == pytest.approx([0.4, 0.561, 0.573])
    assert list(b.chunk_s) == pytest.approx([0.561, 0.573])
    assert (a.send_s, a.ttft_s) == (0.0, pytest.approx(0.4))
    assert (b.send_s, b.ttft_s) == (0.05, pytest.approx(0.511))
    assert results(config, run)["serving_overheads"] == {"dispatch_delay_s": 0.2, "step_overhead_s": 0.0,
                                                         "step_overhead_per_seq_s": 0.0}


def test_a_dispatch_delay_shifts_every_latency_by_itself() -> None:
    reqs = azure_slice(200)
    _, base = simulate(reqs, instances=2, profile=POWER_OF_TWO, seed=3)
    config = SimConfig(2, "p", POWER_OF_TWO, ENGINE, LATENCY, seed=3, dispatch_delay_s=0.005)
    delayed = results(config, Simulation(config, SimWorkload(reqs)).run())
    for key in ("p50", "p90", "p99"):
        assert delayed["ttft"][key] == pytest.approx(base["ttft"][key] + 0.005)
        assert delayed["e2e"][key] == pytest.approx(base["e2e"][key] + 0.005)
        assert delayed["tpot"][key] == pytest.approx(base["tpot"][key])


def test_step_overhead_is_added_to_every_step() -> None:
    config = SimConfig(1, "p", ROUND_ROBIN, ENGINE, LATENCY, step_overhead_s=0.004)
    run = Simulation(config, SimWorkload([TraceRequest(0.0, 100, 3)])).run()
    # prefill 0.2 + 0.004, then two decodes of 0.011 + 0.004
    assert list(run.recorder.timelines()[0].chunk_s) == pytest.approx([0.204, 0.219, 0.234])
    assert run.instances[0].busy_s == pytest.approx(0.234)


@pytest.mark.parametrize("field", ["dispatch_delay_s", "step_overhead_s"])
@pytest.mark.parametrize("value", [-0.001, float("inf"), float("nan")])
def test_overheads_must_be_finite_and_non_negative(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{field} must be a finite number >= 0"):
        SimConfig(1, "p", ROUND_ROBIN, ENGINE, LATENCY, **{field: value})
