"""Decode runs change how many events a simulation handles, never what it computes: with runs and
with every step its own event (`max_run_steps=1`) the token times, dispatch decisions, preemptions,
busy time and final block tables are identical, bit for bit."""

from __future__ import annotations

import copy
from dataclasses import fields, replace

import pytest

from controlplane.runtime.sim.config import SimConfig
from controlplane.runtime.sim.loop import Simulation
from controlplane.runtime.sim.results import results
from controlplane.runtime.sim.workload import SimWorkload
from controlplane.runtime.sim.host import WorkClock
from controlplane.runtime.sim.views import DecodeRunView
from controlplane.scheduling.policies import policy_profile
from controlplane.scheduling.registry import ProfileConfig
from controlplane.scheduling.types import InstanceView
from controlplane.workload import WorkloadSpec, build_workload
from instances.engine.config import EngineConfig
from instances.latency.distserve import Coefficients, DistServeModel
from tests.instances.test_decode_run import TOKEN, engine, request

# decode time grows with the context, so a run's step times all differ
LATENCY = DistServeModel(Coefficients(0.02, 2e-4, 1e-8), Coefficients(0.008, 2e-6, 3e-4))
# reads free_blocks and tokens_in_flight, the two figures a decode run changes mid-run
KV_AWARE = ProfileConfig(filters=("healthy",), scorers={"load": 1.0, "free_kv": 1.0},
                         picker="power_of_two")


def simulate(requests, *, profile, engine, instances=4, max_run_steps=256, seed=3):
    config = SimConfig(instances=instances, policy="p", profile=profile, engine=engine, latency=LATENCY,
                       seed=seed, max_run_steps=max_run_steps)
    sim = Simulation(config, SimWorkload(requests, seed=seed))
    run = sim.run()
    return sim, run, results(config, run)


def fingerprint(sim: Simulation, run) -> dict[str, object]:
    return {
        "chunks": [list(t.chunk_s) for t in run.recorder.timelines()],
        "errors": [t.error for t in run.recorder.timelines()],
        "busy": [inst.busy_s for inst in run.instances],
        "steps": [inst.steps for inst in run.instances],
        "preemptions": [inst.preemptions for inst in run.instances],
        "free_queues": [list(inst.engine.scheduler.blocks.free_queue) for inst in run.instances],
        "cached": [dict(inst.engine.scheduler.blocks.cached) for inst in run.instances],
        "rng": sim.rng.getstate(),
    }


CASES = {
    # 6 req/s per instance over 4 instances at a tenth of the lengths: busy, with queues
    "azure-least-requests": ("azure-conv", {"rate_scale": 4.3, "length_scale": 0.1}, "least-requests", 128),
    "azure-infaas-preempting": ("azure-conv", {"rate_scale": 4.3, "length_scale": 0.1}, "infaas", 40),
    "azure-kv-aware": ("azure-conv", {"rate_scale": 4.3, "length_scale": 0.1}, KV_AWARE, 64),
    # shared prefixes: the prefix cache is on, decode blocks of equal prompts collide and go private
    "mooncake-kv-aware": ("mooncake", {"rate_scale": 4.0, "length_scale": 0.05}, KV_AWARE, 400),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_decode_runs_give_identical_results(case: str) -> None:
    trace, scaling, policy, num_blocks = CASES[case]
    reqs = build_workload(WorkloadSpec(trace=trace, num_requests=400, **scaling))
    profile = policy_profile(policy) if isinstance(policy, str) else policy
    eng = EngineConfig(block_size=16, num_blocks=num_blocks, max_num_batched_tokens=512, max_num_seqs=32,
                       max_model_len=min(2048, num_blocks * 16))
    step_sim, step_run, step_results = simulate(reqs, profile=profile, engine=eng, max_run_steps=1)
    run_sim, run_run, run_results = simulate(reqs, profile=profile, engine=eng)
    assert fingerprint(run_sim, run_run) == fingerprint(step_sim, step_run)
    assert {**run_results, "events": 0} == {**step_results, "events": 0}
    assert step_results["events"] == step_results["steps"] + len(reqs)  # one event per step
    assert run_results["events"] < step_results["events"] / 2
    if case == "azure-infaas-preempting":
        assert run_results["preemptions"] > 0
    if case.startswith("mooncake"):
        assert run_results["cached_prompt_tokens"] > 0


def as_dict(view: InstanceView) -> dict[str, object]:
    """Every field but the last step's duration (the stepped engine times its steps for real)."""
    return {f.name: getattr(view, f.name) for f in fields(InstanceView) if f.name != "last_step_time_s"}


def test_run_view_equals_the_stepped_view_at_every_instant() -> None:
    e = engine(caching=False)
    for i, (n, out) in enumerate([(3, 30), (7, 12), (14, 20)]):
        e.add_request(request(f"r{i}", [1] * n, max_tokens=out))
    e.step()
    stepped = copy.deepcopy(e)
    plan = e.plan_decode_run(64, TOKEN)
    assert plan is not None and plan.steps == 11  # r1 finishes at its 11th decode
    ends = [0.5 + 0.1 * s for s in range(1, plan.steps + 1)]
    clock = WorkClock(None)
    durations = [0.1] * plan.steps
    base = e.stats()
    view = DecodeRunView(base, plan, ends, durations, clock)
    for j in range(plan.steps):
        for now in (ends[j - 1] if j else 0.5, (ends[j - 1] if j else 0.5) + 0.05):
            clock.advance(now)
            assert as_dict(view) == as_dict(stepped.stats())
            assert view.last_step_time_s == (0.1 if j else base.last_step_time_s)
        stepped.step()


def test_max_run_steps_must_be_positive() -> None:
    eng = EngineConfig()
    with pytest.raises(ValueError, match="max_run_steps"):
        SimConfig(1, "p", policy_profile("random"), eng, LATENCY, max_run_steps=0)
    assert replace(SimConfig(1, "p", policy_profile("random"), eng, LATENCY), max_run_steps=1).max_run_steps == 1
