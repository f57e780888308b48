"""Live migration on the in-process runtime: the same migrator and transfer core as on Ray, over
`LoopEndpoint`s. Streams identical to an unmigrated run (greedy and seeded), drains through the
controller with the `none` policy, refusals and busy instances, and no block left behind."""

from __future__ import annotations

import asyncio
import random

import pytest

from controlplane.controller.controller import Controller
from controlplane.runtime.local import LocalCluster
from controlplane.scheduling.migration import MigrationOrder
from controlplane.scheduling.registry import build_migration_policy
from controlplane.transfer.settings import TransferSettings
from flotilla.errors import MigrationBusy
from instances.engine.config import EngineConfig
from instances.models.loader import load_model
from instances.types import EngineRequest
from tests.helpers import migration as helpers
from tests.helpers.migration import Outcomes, make_requests, stream

ENGINE = EngineConfig(block_size=8, num_blocks=256, max_num_batched_tokens=128, max_num_seqs=16, max_model_len=512)
IDS = ("instance-0", "instance-1", "instance-2")


@pytest.fixture(scope="module")
def loaded():
    return load_model("tiny-llama")


def requests(n: int, seed: int, max_tokens: int = 80) -> list[EngineRequest]:
    return make_requests(n, seed, f"q{seed}-", (max_tokens, max_tokens + 1), (8, 90))


def reference(loaded, reqs: list[EngineRequest]) -> dict[str, list[int]]:
    return helpers.reference(ENGINE, reqs, loaded)


async def idle(cluster: LocalCluster) -> None:
    for _ in range(200):
        if all(not v.running and not v.waiting and v.free_blocks == v.total_blocks for v in cluster.views()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError([(v.instance_id, v.running, v.waiting, v.free_blocks) for v in cluster.views()])


def test_random_migrations_keep_every_stream_identical(loaded):
    reqs = requests(9, seed=1)
    expected = reference(loaded, reqs)

    async def main() -> list:
        cluster = await LocalCluster.create("tiny-llama", 3, ENGINE, loaded=loaded,
                                            transfer=TransferSettings(last_stage_blocks=0, stage_chunk_blocks=4))
        rng = random.Random(3)
        outcomes = []
        try:
            tasks = {r.request_id: asyncio.create_task(stream(cluster, IDS[i % 2], r)) for i, r in enumerate(reqs)}
            while not all(t.done() for t in tasks.values()):
                live = [rid for rid, t in tasks.items() if not t.done() and cluster.router.instance_of(rid)]
                if live:
                    rid = rng.choice(live)
                    here = cluster.locate(rid)
                    try:
                        outcomes.append(await cluster.migrate(
                            MigrationOrder(rid, here, rng.choice([i for i in IDS if i != here]), "test")))
                    except MigrationBusy:
                        pass
                await asyncio.sleep(rng.uniform(0, 0.02))
            got = {rid: t.result() for rid, t in tasks.items()}
            await idle(cluster)
        finally:
            await cluster.close()
        assert got == expected
        return outcomes

    outcomes = asyncio.run(main())
    committed = [o for o in outcomes if o.committed]
    assert len(committed) >= 5 and any(o.stages >= 2 for o in committed)
    assert all(o.result in ("committed", "finished") for o in outcomes), [o for o in outcomes if not o.committed]


def test_a_drain_with_the_none_policy_moves_everything_and_refusals_leave_requests_put(loaded):
    reqs = requests(6, seed=2, max_tokens=120)
    expected = reference(loaded, reqs)

    async def main() -> None:
        cluster = await LocalCluster.create("tiny-llama", 2, ENGINE, loaded=loaded, max_in_flight=1)
        controller = Controller(cluster, build_migration_policy("none", {}, 1), interval_s=0.02)
        outcomes = Outcomes()
        cluster.observers.append(outcomes)
        try:
            tasks = [asyncio.create_task(stream(cluster, "instance-0", r)) for r in reqs]
            while cluster.router.instance_of(reqs[0].request_id) is None:
                await asyncio.sleep(0.01)
            assert await controller.tick() == []  # nothing drains: the none policy asks no instance
            await cluster.set_draining("instance-1", True)
            refused = await cluster.migrate(MigrationOrder(reqs[0].request_id, "instance-0", "instance-1", "test"))
            assert (refused.result, refused.reason, refused.stages) == ("refused", "draining", 0)
            await cluster.set_draining("instance-1", False)
            await controller.drain("instance-0")
            ticking = asyncio.create_task(controller.run())
            got = await asyncio.gather(*tasks)
            ticking.cancel()
            assert dict(zip([r.request_id for r in reqs], got)) == expected
            assert cluster.views()[0].draining
            drained = [o for o in outcomes if o.order.reason == "drain"]
            assert sum(o.committed for o in drained) >= 3
            assert all(o.order.source == "instance-0" and o.order.destination == "instance-1" for o in drained)
            await idle(cluster)
        finally:
            await cluster.close()

    asyncio.run(main())
