"""Migration in the simulator: orders carried out with the engine verbs, block books kept exact,
outputs exact, runs reproducible, decode runs still equal to stepping."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controlplane.runtime.sim.config import SimConfig
from controlplane.runtime.sim.loop import Simulation
from controlplane.runtime.sim.results import results
from controlplane.runtime.sim.workload import SimWorkload
from controlplane.runtime.sim.migration import MigrationModel
from controlplane.scheduling.llumnix_migration import LlumnixMigrationPolicy
from controlplane.scheduling.migration import MigrationOrder
from controlplane.scheduling.plugins.llumnix import LlumnixSettings
from controlplane.scheduling.policies import policy_profile
from controlplane.transfer.settings import TransferSettings
from controlplane.workload import TraceRequest, WorkloadSpec, build_workload
from instances.engine.config import EngineConfig
from instances.latency.distserve import Coefficients, DistServeModel

LATENCY = DistServeModel(Coefficients(0.02, 2e-4, 1e-8), Coefficients(0.008, 2e-6, 3e-4))
ENGINE = EngineConfig(block_size=16, num_blocks=160, max_num_batched_tokens=512, max_num_seqs=16,
                      max_model_len=1024)
# 1 MB blocks over 1 GB/s: 1 ms a block
LLUMNIX = MigrationModel(LlumnixMigrationPolicy(LlumnixSettings(source_freeness=4, destination_freeness=8,
                                                                headroom_blocks=8)),
                         kv_bytes_per_block=1e6, bandwidth_bytes_s=1e9, interval_s=0.05, overhead_s=0.002)


class Scripted:
    """Orders given per tick number (a test double of `MigrationPolicy`)."""

    def __init__(self, script: dict[int, list[MigrationOrder]]) -> None:
        self.script = script
        self.ticks = 0

    def sources(self, views):
        return [v.instance_id for v in views]

    def instance_info(self, view):
        return {}

    def plan(self, views, candidates, in_flight):
        self.ticks += 1
        return self.script.get(self.ticks, [])


def simulate(requests, *, profile="round-robin", migration=None, instances=2, max_run_steps=256, seed=0):
    config = SimConfig(instances=instances, policy=profile, profile=policy_profile(profile), engine=ENGINE,
                       latency=LATENCY, seed=seed, max_run_steps=max_run_steps, migration=migration)
    run = Simulation(config, SimWorkload(requests, seed=seed)).run()
    return run, results(config, run)


def bursty(n=300, rate=30.0, seed=1, **kw):
    """ShareGPT lengths (capped to the small engines) with Gamma arrivals of CV 4."""
    return build_workload(WorkloadSpec(trace="sharegpt", num_requests=n, request_rate=rate, arrival="gamma",
                                       cv=4.0, seed=seed, max_input_len=600, max_output_len=400, **kw))


def assert_books_clean(run):
    for inst in run.instances:
        e = inst.engine
        assert e.scheduler.blocks.num_free_blocks == ENGINE.num_blocks, inst.instance_id
        assert not e.migration.reservations and not e.migration.suspended and not e.scheduler.requests


def test_a_running_request_moves_in_stages_and_produces_exactly_its_output():
    # both requests start on instance 0 (round robin over 1 request each would split them: use 1 + a
    # scripted order at the second tick, 0.05 s, while request 0 decodes)
    move = MigrationOrder("req-0", "sim-0000", "sim-0001", "load")
    policy = Scripted({2: [move]})
    run, r = simulate([TraceRequest(0.0, 200, 60)], migration=replace(LLUMNIX, policy=policy))
    assert r["migrations"]["committed"] == 1 and r["migrations"]["aborted"] == 0
    assert r["migrations"]["by_reason"] == {"load": 1}
    t = run.recorder.timelines()[0]
    assert t.output_tokens == 60 and len(t.chunk_s) == 60
    assert run.instances[1].steps > 0  # it finished on the destination
    # downtime: the blocks gained after the last stage (at most last_stage_blocks) + the overhead
    assert 0.002 <= r["migrations"]["downtime_s"]["p50"] <= 0.002 + 2 * 0.001 + 1e-12
    assert_books_clean(run)


def test_a_queued_request_moves_without_a_copy():
    # round robin: req-0 and req-2 on instance 0, req-1 on instance 1, all at t = 0. req-0's 900-token
    # prompt takes the whole 512-token budget, so req-2 waits; the first tick (at t = 0, after the
    # arrivals) moves it, and it is committed into instance 1's queue after the fixed overhead
    reqs = [TraceRequest(0.0, 900, 5), TraceRequest(0.0, 100, 5), TraceRequest(0.0, 100, 5)]
    policy = Scripted({1: [MigrationOrder("req-2", "sim-0000", "sim-0001", "load")]})
    run, r = simulate(reqs, migration=replace(LLUMNIX, policy=policy))
    assert (r["migrations"]["committed"], r["migrations"]["aborted"]) == (1, 0)
    assert r["migrations"]["downtime_s"]["p50"] == pytest.approx(0.002)
    assert [t.output_tokens for t in run.recorder.timelines()] == [5, 5, 5]
    # instance 1 ran req-1 (1 prefill step + 4 decodes), then req-2 with or beside it
    assert run.recorder.timelines()[2].chunk_s[0] < run.recorder.timelines()[0].chunk_s[0]
    assert_books_clean(run)


def test_refused_reservation_aborts_and_the_request_stays():
    # 100-block instances: each holds one 900-token request (57 blocks and growing), so the destination
    # has about 40 free blocks, too few for the 57 the moving request holds
    move = MigrationOrder("req-0", "sim-0000", "sim-0001", "load")
    small = replace(ENGINE, num_blocks=100)
    reqs = [TraceRequest(0.0, 900, 40), TraceRequest(0.0, 900, 40)]
    config = SimConfig(instances=2, policy="round-robin", profile=policy_profile("round-robin"), engine=small,
                       latency=LATENCY, migration=replace(LLUMNIX, policy=Scripted({6: [move]})))
    run = Simulation(config, SimWorkload(reqs)).run()
    r = results(config, run)
    assert (r["migrations"]["started"], r["migrations"]["committed"]) == (1, 0)
    assert r["migrations"]["aborted_by"] == {"no_room": 1}
    assert [t.output_tokens for t in run.recorder.timelines()] == [40, 40]
    for inst in run.instances:
        assert inst.engine.scheduler.blocks.num_free_blocks == 100


def test_a_request_that_finishes_during_its_copy_cancels_the_reservation():
    # 10 output tokens end at about 0.2 s; a 1 ms/block copy of 57 blocks at 1 MB/s takes 57 s
    move = MigrationOrder("req-0", "sim-0000", "sim-0001", "load")
    slow = replace(LLUMNIX, policy=Scripted({2: [move]}), bandwidth_bytes_s=1e6)
    run, r = simulate([TraceRequest(0.0, 900, 10)], migration=slow)
    assert (r["migrations"]["committed"], r["migrations"]["aborted_by"]) == (0, {"finished": 1})
    assert run.recorder.timelines()[0].output_tokens == 10
    assert_books_clean(run)


def test_llumnix_runs_keep_books_exact_and_outputs_exact_and_are_reproducible():
    reqs = bursty()
    run, r = simulate(reqs, profile="llumnix", migration=LLUMNIX, instances=4)
    assert r["migrations"]["committed"] > 0
    assert [t.output_tokens for t in run.recorder.timelines()] == [q.output_len for q in reqs]
    assert_books_clean(run)
    run2, r2 = simulate(reqs, profile="llumnix", migration=LLUMNIX, instances=4)
    assert r2 == r
    assert [list(t.chunk_s) for t in run2.recorder.timelines()] == [list(t.chunk_s) for t in run.recorder.timelines()]


def test_migration_with_decode_runs_equals_stepping():
    reqs = bursty(n=150)
    runs, r_runs = simulate(reqs, profile="llumnix", migration=LLUMNIX, instances=4)
    steps, r_steps = simulate(reqs, profile="llumnix", migration=LLUMNIX, instances=4, max_run_steps=1)
    assert r_runs["migrations"]["committed"] > 0
    assert {k: v for k, v in r_runs.items() if k != "events"} == {k: v for k, v in r_steps.items() if k != "events"}
    assert [list(t.chunk_s) for t in runs.recorder.timelines()] == [list(t.chunk_s) for t in steps.recorder.timelines()]


def test_llumnix_beats_round_robin_p99_ttft_on_a_bursty_workload():
    reqs = bursty()
    _, rr = simulate(reqs, profile="round-robin", instances=4)
    _, ll = simulate(reqs, profile="llumnix", migration=LLUMNIX, instances=4)
    assert ll["ttft"]["p99"] < rr["ttft"]["p99"]


def test_priority_classes_are_reported_apart():
    reqs = bursty(n=200, high_priority_fraction=0.2, offline_rate=2.0)
    run, r = simulate(reqs, profile="llumnix", migration=LLUMNIX, instances=4)
    counts = {name: c["requests"] for name, c in r["classes"].items()}
    assert counts == {"high": sum(q.priority == 0 for q in reqs), "normal": sum(q.priority == 1 for q in reqs),
                      "offline": sum(q.priority == 3 for q in reqs)}
    assert counts["offline"] > 0 and counts["high"] > 0
    assert_books_clean(run)


def test_migration_model_is_validated():
    with pytest.raises(ValueError, match="bandwidth_bytes_s"):
        replace(LLUMNIX, bandwidth_bytes_s=0)
    with pytest.raises(ValueError, match="max_stages"):
        TransferSettings(max_stages=-1)
