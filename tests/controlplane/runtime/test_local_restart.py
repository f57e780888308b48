"""The in-process runtime when an engine step fails: the instance's streams end with
InstanceUnavailable at once (none hangs), the other instance is untouched, and the instance is
rebuilt from its spec and serves again with the same outputs."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.runtime.local import LocalCluster
from flotilla.errors import InstanceUnavailable
from instances.engine.config import EngineConfig
from instances.models.loader import load_model
from tests.helpers import migration as helpers
from tests.helpers.migration import make_requests, stream

ENGINE = EngineConfig(block_size=8, num_blocks=128, max_num_batched_tokens=128, max_num_seqs=8, max_model_len=512)


async def test_a_failing_step_loop_is_rebuilt_and_serves_again():
    loaded = load_model("tiny-llama")
    cluster = await LocalCluster.create("tiny-llama", 2, ENGINE, loaded=loaded)
    try:
        reqs = make_requests(3, seed=4, prefix="lost-", max_tokens=(200, 201))
        expected = helpers.reference(ENGINE, reqs, loaded)
        victims = [asyncio.create_task(stream(cluster, "instance-0", r)) for r in reqs[:2]]
        bystander = asyncio.create_task(stream(cluster, "instance-1", reqs[2]))
        while cluster.loops["instance-0"].stats().running < 2:
            await asyncio.sleep(0.01)
        broken = cluster.loops["instance-0"]

        def step():
            raise RuntimeError("injected: the forward pass failed")
        broken.replica.step = step
        for task in victims:
            with pytest.raises(InstanceUnavailable, match="instance instance-0 was lost; retry"):
                await asyncio.wait_for(task, 10)
        assert await bystander == expected[reqs[2].request_id]
        assert cluster.loops["instance-0"] is not broken
        again = make_requests(1, seed=5, prefix="again-", max_tokens=(40, 41))[0]
        assert await stream(cluster, "instance-0", again) == helpers.reference(ENGINE, [again], loaded)[again.request_id]
        assert [(v.healthy, v.running, v.free_blocks) for v in cluster.views()] == [(True, 0, 128)] * 2
    finally:
        await cluster.close()
