"""Instances sharing one host's CPUs (`HostModel`, processor sharing) and the per-sequence step
overhead, on timelines computed by hand."""

from __future__ import annotations

import pytest

from controlplane.runtime.sim.config import SimConfig
from controlplane.runtime.sim.loop import Simulation
from controlplane.runtime.sim.results import results
from controlplane.runtime.sim.workload import SimWorkload
from controlplane.runtime.sim.host import HostModel, WorkClock
from controlplane.workload import TraceRequest
from tests.controlplane.runtime.sim.test_simulation import (
    ENGINE,
    LATENCY,
    POWER_OF_TWO,
    ROUND_ROBIN,
    azure_slice,
)


def simulate(requests, instances=2, host=None, **kw):
    config = SimConfig(instances, "p", ROUND_ROBIN, ENGINE, LATENCY, host=host, **kw)
    run = Simulation(config, SimWorkload(requests)).run()
    return run, [list(t.chunk_s) for t in run.recorder.timelines()]


def test_rate_is_processor_sharing_of_the_cores() -> None:
    host = HostModel(cores=2, background_cores=1.0)
    assert [host.rate(n) for n in (0, 1, 2, 3)] == [1.0, 1.0, pytest.approx(2 / 3), 0.5]
    assert HostModel(cores=4).rate(2) == 1.0


def test_two_instances_on_one_core_each_run_at_half_speed() -> None:
    # each prefill is 0.2 s of work and each decode 0.011 s; both step at once on one core
    run, chunks = simulate([TraceRequest(0.0, 100, 2), TraceRequest(0.0, 100, 2)], host=HostModel(cores=1))
    assert chunks == [pytest.approx([0.4, 0.422]), pytest.approx([0.4, 0.422])]
    assert [inst.busy_s for inst in run.instances] == pytest.approx([0.211, 0.211])  # work, not wall time


def test_the_rate_changes_when_another_instance_starts_or_stops() -> None:
    # A alone for 0.1 s (0.1 of its 0.2 work), then both at half speed: A ends at 0.3 (B has done
    # 0.1); A has nothing left, so B runs alone again and needs 0.1 s more
    _, chunks = simulate([TraceRequest(0.0, 100, 1), TraceRequest(0.1, 100, 1)], host=HostModel(cores=1))
    assert chunks == [pytest.approx([0.3]), pytest.approx([0.4])]


def test_background_cores_take_their_share() -> None:
    # two stepping instances and one core of background on two cores: 2/3 speed
    _, chunks = simulate([TraceRequest(0.0, 100, 1), TraceRequest(0.0, 100, 1)],
                         host=HostModel(cores=2, background_cores=1.0))
    assert chunks == [pytest.approx([0.3]), pytest.approx([0.3])]


def test_enough_cores_give_the_dedicated_timelines() -> None:
    reqs = azure_slice(150)
    config = {"instances": 3}
    _, dedicated = simulate(reqs, **config)
    _, hosted = simulate(reqs, host=HostModel(cores=3), **config)
    assert hosted == [pytest.approx(c, abs=1e-9) for c in dedicated]


def test_per_sequence_overhead_is_added_per_scheduled_sequence() -> None:
    # step 1: A's prefill (0.2 + 0.002); step 2: B's prefill and A's decode (0.2 + 0.011 + 2 x 0.002);
    # step 3: both decode (0.012 + 2 x 0.002); step 4: B decodes alone (0.011 + 0.002)
    _, chunks = simulate([TraceRequest(0.0, 100, 3), TraceRequest(0.0, 100, 3)], instances=1,
                         step_overhead_per_seq_s=0.002)
    assert chunks == [pytest.approx([0.202, 0.417, 0.433]), pytest.approx([0.417, 0.433, 0.446])]


def test_per_sequence_overhead_in_decode_runs_equals_stepping() -> None:
    reqs = azure_slice(200)
    config = {"instances": 2, "step_overhead_per_seq_s": 0.0007, "step_overhead_s": 0.001}
    run_a, by_runs = simulate(reqs, **config)
    run_b, by_steps = simulate(reqs, max_run_steps=1, **config)
    assert by_runs == by_steps
    assert run_a.events < run_b.events


def test_host_and_overheads_are_reported() -> None:
    config = SimConfig(2, "p", POWER_OF_TWO, ENGINE, LATENCY, host=HostModel(2, 0.5), step_overhead_per_seq_s=1e-4)
    r = results(config, Simulation(config, SimWorkload([TraceRequest(0.0, 10, 2)])).run())
    assert r["serving_overheads"] == {"dispatch_delay_s": 0.0, "step_overhead_s": 0.0,
                                      "step_overhead_per_seq_s": 1e-4}
    assert r["host"] == {"cores": 2, "background_cores": 0.5}


@pytest.mark.parametrize(("cores", "background"), [(0, 0.0), (float("inf"), 0.0), (1, -0.5), (1, float("nan"))])
def test_host_must_be_sane(cores: float, background: float) -> None:
    with pytest.raises(ValueError, match="host"):
        HostModel(cores, background)


def test_work_clock_without_a_host_is_exactly_time() -> None:
    clock = WorkClock(None)
    clock.set_stepping(3)
    clock.advance(0.1)
    assert (clock.now, clock.work, clock.time_of(0.7)) == (0.1, 0.1, 0.7)
