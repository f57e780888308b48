"""The Ray runtime against a real local Ray: instance actors, batched submission, pushed stats,
aborts that free blocks, and a killed actor failing its streams cleanly."""

import asyncio
import os

import pytest
import pytest_asyncio
import ray

from controlplane.runtime.ray_cluster import RayCluster
from flotilla.errors import InstanceUnavailable, InvalidRequest
from instances.engine.config import EngineConfig
from instances.engine.engine import Engine
from instances.engine.executor import ModelRunner
from instances.models.loader import load_model
from instances.replica import ReplicaSpec
from instances.types import EngineRequest, FinishReason, SamplingParams

pytestmark = pytest.mark.asyncio(loop_scope="module")

ENGINE = EngineConfig(block_size=16, num_blocks=64, max_num_batched_tokens=256, max_num_seqs=16, max_model_len=512)


def greedy_request(rid: str, prompt: list[int], n: int) -> EngineRequest:
    return EngineRequest(rid, prompt, SamplingParams(max_tokens=n, temperature=0, ignore_eos=True))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster():
    specs = [ReplicaSpec(instance_id=f"instance-{i}", model="tiny-llama", engine=ENGINE) for i in range(2)]
    c = await RayCluster.start(specs, num_cpus_per_instance=0.5)
    yield c
    await c.close()
    assert not ray.is_initialized()


async def collect(cluster, iid, req):
    chunks = [c async for c in cluster.generate(iid, req)]
    for a, b in zip(chunks, chunks[1:]):
        assert b.first_index == a.first_index + len(a.token_ids)
    return chunks


def local_greedy(prompt: list[int], n: int) -> list[int]:
    loaded = load_model("tiny-llama")
    engine = Engine(ENGINE, ModelRunner(loaded.model, ENGINE))
    engine.add_request(greedy_request("ref", prompt, n))
    out = []
    while engine.has_unfinished():
        for d in engine.step().deltas:
            out.extend(d.token_ids)
    return out


async def test_both_instances_serve_identical_greedy_tokens(cluster):
    prompt = list(range(40, 90))
    a, b = await asyncio.gather(
        collect(cluster, "instance-0", greedy_request("a", prompt, 12)),
        collect(cluster, "instance-1", greedy_request("b", prompt, 12)),
    )
    tokens_a = [t for c in a for t in c.token_ids]
    assert tokens_a == [t for c in b for t in c.token_ids] == local_greedy(prompt, 12)
    assert a[-1].finish_reason is FinishReason.LENGTH and a[-1].num_prompt_tokens == 50


async def test_many_concurrent_requests_are_batched_and_all_finish(cluster):
    reqs = [greedy_request(f"c{i}", [5 + i] * (3 + i), 4) for i in range(20)]
    results = await asyncio.gather(*(collect(cluster, f"instance-{i % 2}", r) for i, r in enumerate(reqs)))
    assert all(sum(len(c.token_ids) for c in chunks) == 4 for chunks in results)


async def test_instance_actors_run_at_the_drivers_niceness(cluster):
    # Ray would start its workers at nice +15; a private Ray (tests/conftest.py, as flotilla serve's) runs them at ours
    driver = os.getpriority(os.PRIO_PROCESS, 0)
    for inst in cluster.instances.values():
        assert await inst.handle.__ray_call__.remote(lambda actor: os.getpriority(os.PRIO_PROCESS, 0)) == driver


async def test_invalid_request_is_refused_by_the_instance(cluster):
    with pytest.raises(InvalidRequest, match="context"):
        await collect(cluster, "instance-0", greedy_request("too-long", [1] * 600, 4))


async def wait_for(predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_closing_a_stream_aborts_and_frees_blocks(cluster):
    stream = cluster.generate("instance-0", greedy_request("abandoned", list(range(1, 100)), 400))
    first = await stream.__anext__()
    assert first.token_ids
    await stream.aclose()

    def idle():
        v = {x.instance_id: x for x in cluster.views()}["instance-0"]
        return v.running == 0 and v.waiting == 0 and v.free_blocks == v.total_blocks

    await wait_for(idle)


async def test_killed_actor_fails_its_streams_and_is_marked_unhealthy(cluster):
    stream = cluster.generate("instance-1", greedy_request("doomed", list(range(1, 50)), 400))
    await stream.__anext__()
    ray.kill(cluster.instances["instance-1"].handle)
    with pytest.raises(InstanceUnavailable):
        async for _ in stream:
            pass
    await wait_for(lambda: not {v.instance_id: v for v in cluster.views()}["instance-1"].healthy)
    with pytest.raises(InstanceUnavailable):
        await collect(cluster, "instance-1", greedy_request("after", [1, 2, 3], 2))
