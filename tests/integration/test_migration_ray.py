"""Live migration between instance actors on a real local Ray: identical outputs with and without
migration (greedy and seeded sampling), multi-stage copies, aborted migrations (destination
refuses, destination killed mid-copy), draining a busy instance, and no leaked blocks."""

from __future__ import annotations

import asyncio
import random

import pytest
import pytest_asyncio
import ray

from controlplane.controller.controller import Controller
from controlplane.controller.migrator import Migrator
from controlplane.runtime.ray_cluster import RayCluster
from controlplane.runtime.ray_endpoint import RayEndpoint
from controlplane.scheduling.llumnix_migration import LlumnixMigrationPolicy
from controlplane.scheduling.migration import MigrationOrder
from controlplane.transfer.protocol import TransferOutcome
from controlplane.transfer.settings import TransferSettings
from flotilla.errors import MigrationBusy
from instances.engine.config import EngineConfig
from instances.replica import ReplicaSpec
from instances.types import EngineRequest
from tests.helpers import migration as helpers
from tests.helpers.migration import Outcomes, make_requests, stream

pytestmark = pytest.mark.asyncio(loop_scope="module")

ENGINE = EngineConfig(block_size=8, num_blocks=512, max_num_batched_tokens=256, max_num_seqs=32,
                      max_model_len=1024, reservation_timeout_s=5.0)
IDS = [f"instance-{i}" for i in range(3)]


def reference(reqs: list[EngineRequest]) -> dict[str, list[int]]:
    return helpers.reference(ENGINE, reqs)


async def settled_views(cluster: RayCluster) -> dict[str, object]:
    """Views once every instance has pushed a snapshot taken after the last request ended."""
    await asyncio.sleep(1.5)  # one long-poll period: idle instances push their stats every second
    return {v.instance_id: v for v in cluster.views()}


def assert_no_leaks(views: dict, ids: list[str]) -> None:
    for iid in ids:
        v = views[iid]
        assert (v.running, v.waiting, v.free_blocks) == (0, 0, v.total_blocks), iid


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster():
    specs = [ReplicaSpec(instance_id=iid, model="tiny-llama", engine=ENGINE) for iid in IDS]
    c = await RayCluster.start(specs, num_cpus_per_instance=0.5,
                               transfer=TransferSettings(last_stage_blocks=0, max_stages=4))
    yield c
    await c.close()


async def test_random_migrations_keep_outputs_identical(cluster):
    reqs = make_requests(12, seed=1, prefix="m", max_tokens=(150, 300))
    expected = reference(reqs)
    outcomes: list[TransferOutcome] = []
    rng = random.Random(2)
    tasks = {r.request_id: asyncio.create_task(stream(cluster, IDS[i % 2], r)) for i, r in enumerate(reqs)}

    async def migrate_randomly() -> None:
        while not all(t.done() for t in tasks.values()):
            live = [rid for rid, t in tasks.items() if not t.done() and cluster.router.instance_of(rid)]
            if live:
                rid = rng.choice(live)
                here = cluster.locate(rid)
                to = rng.choice([i for i in IDS if i != here])
                try:
                    outcomes.append(await cluster.migrate(MigrationOrder(rid, here, to, "test")))
                except MigrationBusy:
                    pass  # the other loop is moving it (often the last live request), or an instance is full
            await asyncio.sleep(rng.uniform(0.0, 0.05))

    await asyncio.gather(migrate_randomly(), migrate_randomly(), *tasks.values())  # two at once
    got = {rid: t.result() for rid, t in tasks.items()}
    assert got == expected
    committed = [o for o in outcomes if o.committed]
    assert len(committed) >= 10
    assert any(o.stages >= 3 for o in committed)  # two copies while decoding, then stop-and-copy
    assert all(o.result in ("committed", "finished") for o in outcomes), [o for o in outcomes if not o.committed]
    assert_no_leaks(await settled_views(cluster), IDS)


async def test_refused_migration_leaves_the_request_running(cluster):
    req = make_requests(1, seed=3, prefix="refused", max_tokens=(150, 151))[0]
    expected = reference([req])
    task = asyncio.create_task(stream(cluster, "instance-0", req))
    await cluster.set_draining("instance-1", True)
    try:
        while cluster.router.instance_of(req.request_id) is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        outcome = await cluster.migrate(MigrationOrder(req.request_id, "instance-0", "instance-1", "test"))
    finally:
        await cluster.set_draining("instance-1", False)
    assert (outcome.result, outcome.stages) == ("refused", 0)
    assert "draining" in outcome.detail
    assert await task == expected[req.request_id]
    assert_no_leaks(await settled_views(cluster), IDS)


async def test_drain_moves_every_request_off_a_busy_instance(cluster):
    reqs = make_requests(10, seed=4, prefix="drain", max_tokens=(300, 400))
    expected = reference(reqs)
    outcomes = Outcomes()
    cluster.observers.append(outcomes)
    policy = LlumnixMigrationPolicy(max_in_flight=2, rules=("drain",))
    controller = Controller(cluster, policy, interval_s=0.05)
    ticking = asyncio.create_task(controller.run())
    tasks = [asyncio.create_task(stream(cluster, "instance-0", r)) for r in reqs]
    try:
        await asyncio.sleep(0.3)  # all running or queued on instance-0
        await controller.drain("instance-0")
        got = await asyncio.gather(*tasks)
    finally:
        ticking.cancel()
        cluster.observers.remove(outcomes)
        await cluster.set_draining("instance-0", False)
    assert dict(zip([r.request_id for r in reqs], got)) == expected
    moved = {o.order.request_id for o in outcomes if o.committed}
    assert len(moved) >= 5 and all(o.order.source == "instance-0" for o in outcomes)
    assert_no_leaks(await settled_views(cluster), IDS)


class SlowImports(RayEndpoint):
    """A destination whose every page import waits 0.2 s first (a slow link)."""

    async def import_stage(self, pages):
        await asyncio.sleep(0.2)
        return await super().import_stage(pages)


async def test_destination_killed_mid_copy(cluster):
    """Last in this module: it kills instance-2. The copy goes one block a call and each import
    waits 0.2 s, so it is in progress when the destination dies; the request goes on at its source."""
    req = make_requests(1, seed=5, prefix="killed", max_tokens=(400, 401))[0]
    expected = reference([req])
    task = asyncio.create_task(stream(cluster, "instance-0", req))
    while cluster.router.instance_of(req.request_id) is None:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    endpoints = {**cluster.migrator.endpoints, "instance-2": SlowImports("instance-2", cluster.instances["instance-2"].handle)}
    slow = Migrator(endpoints, "tiny-llama", TransferSettings(stage_chunk_blocks=1, transfer_timeout_s=5.0), 2,
                    on_commit=lambda o: cluster.router.moved(o.request_id, o.destination), step_time=lambda iid: 0.0)
    migrating = asyncio.create_task(slow.migrate(MigrationOrder(req.request_id, "instance-0", "instance-2", "t")))
    await asyncio.sleep(0.7)
    assert not migrating.done()
    ray.kill(cluster.instances["instance-2"].handle)
    outcome = await migrating
    assert (outcome.result, outcome.stages) == ("failed", 0) and "instance-2" in outcome.detail, outcome
    assert await task == expected[req.request_id]
    assert_no_leaks(await settled_views(cluster), IDS[:2])
