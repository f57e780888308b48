"""A lost instance actor on a real local Ray: its process killed with SIGKILL, or its step loop
failing inside an engine step. Its streams end with InstanceUnavailable at once (no hang), the
admin view says `restarting`, and the instance serves again, empty, with the same outputs."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import pytest_asyncio

from controlplane.runtime.ray_cluster import RayCluster
from flotilla.errors import InstanceUnavailable
from instances.engine.config import EngineConfig
from instances.replica import ReplicaSpec
from tests.helpers import migration as helpers
from tests.helpers.migration import make_requests, stream

pytestmark = pytest.mark.asyncio(loop_scope="module")

ENGINE = EngineConfig(block_size=8, num_blocks=256, max_num_batched_tokens=256, max_num_seqs=16, max_model_len=1024)
IDS = ["instance-0", "instance-1"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster():
    c = await RayCluster.start([ReplicaSpec(iid, "tiny-llama", ENGINE) for iid in IDS], num_cpus_per_instance=0.5)
    yield c
    await c.close()


def kill_process(cluster: RayCluster, iid: str):
    async def kill() -> None:
        pid = await cluster.instances[iid].handle.__ray_call__.remote(lambda actor: os.getpid())
        os.kill(pid, signal.SIGKILL)
    return kill


def fail_next_step(cluster: RayCluster, iid: str):
    def arm(actor) -> None:
        engine = actor.replica.engine

        def step():
            raise RuntimeError("injected: the forward pass failed")
        engine.step = step

    async def inject() -> None:
        await cluster.instances[iid].handle.__ray_call__.remote(arm)
    return inject


async def serving_again(cluster: RayCluster, iid: str) -> list[str]:
    """The states the instance went through until it serves again (restarting first)."""
    seen = []
    for _ in range(600):
        v = next(v for v in cluster.views() if v.instance_id == iid)
        state = "restarting" if v.restarting else "serving" if v.healthy else "unhealthy"
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == "serving":
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"{iid} did not serve again: {seen}")


@pytest.mark.parametrize("fault", [kill_process, fail_next_step])
async def test_a_lost_instance_fails_its_streams_and_serves_again(cluster, fault):
    reqs = make_requests(4, seed=11, prefix=f"{fault.__name__}-", max_tokens=(300, 400))
    expected = helpers.reference(ENGINE, reqs)
    victims = [asyncio.create_task(stream(cluster, "instance-0", r)) for r in reqs[:3]]
    bystander = asyncio.create_task(stream(cluster, "instance-1", reqs[3]))
    while not all(cluster.router.instance_of(r.request_id) for r in reqs[:3]):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # mid-stream
    await fault(cluster, "instance-0")()
    for task in victims:
        with pytest.raises(InstanceUnavailable, match="instance instance-0 was lost; retry"):
            await asyncio.wait_for(task, 30)
    assert await serving_again(cluster, "instance-0") == ["restarting", "serving"]
    assert await bystander == expected[reqs[3].request_id]
    again = make_requests(1, seed=12, prefix=f"{fault.__name__}-again-", max_tokens=(50, 60))[0]
    assert await stream(cluster, "instance-0", again) == helpers.reference(ENGINE, [again])[again.request_id]
    v0 = next(v for v in cluster.views() if v.instance_id == "instance-0")
    assert (v0.healthy, v0.restarting, v0.running) == (True, False, 0)
