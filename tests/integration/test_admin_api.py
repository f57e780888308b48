"""The admin REST API over the Ray runtime: listing instances, migrating a streaming request (its
text identical to an unmigrated run), draining and undraining, and clear errors for bad calls."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
import uvicorn

from controlplane.api.app import create_app
from controlplane.config import FlotillaConfig
from controlplane.controller.controller import Controller
from controlplane.observability.metrics import Metrics
from controlplane.runtime.ray_cluster import RayCluster
from controlplane.scheduling.registry import build_framework, build_migration_policy
from instances.engine.config import EngineConfig
from instances.models.loader import load_frontend
from instances.replica import ReplicaSpec

pytestmark = pytest.mark.asyncio(loop_scope="module")

ENGINE = EngineConfig(block_size=16, num_blocks=128, max_num_batched_tokens=256, max_num_seqs=8, max_model_len=1024)
BODY = {"model": "tiny-llama", "prompt": "Migrating a request, token by token", "max_tokens": 400,
        "temperature": 0, "ignore_eos": True}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[tuple[httpx.AsyncClient, RayCluster]]:
    specs = [ReplicaSpec(f"instance-{i}", "tiny-llama", ENGINE) for i in range(2)]
    cluster = await RayCluster.start(specs, num_cpus_per_instance=0.5)
    controller = Controller(cluster, build_migration_policy("none", {}, 2), interval_s=0.05)
    app = create_app(cluster, load_frontend("tiny-llama").tokenizer, "tiny-llama", ENGINE.max_model_len,
                     build_framework(FlotillaConfig().scheduling.profiles), "default", Metrics(),
                     controller=controller)
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    ticking = asyncio.create_task(controller.run())
    while not server.started:
        await asyncio.sleep(0.01)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=60)
    try:
        yield http, cluster
    finally:
        await http.aclose()
        server.should_exit = True
        await serving
        ticking.cancel()
        await cluster.close()


async def instances(http: httpx.AsyncClient) -> dict[str, dict]:
    r = await http.get("/admin/v1/instances")
    assert r.status_code == 200
    return {i["id"]: i for i in r.json()["instances"]}


async def test_list_instances(served):
    http, _ = served
    got = await instances(http)
    assert sorted(got) == ["instance-0", "instance-1"]
    i0 = got["instance-0"]
    assert {k: i0[k] for k in ("role", "status", "running", "waiting", "free_blocks", "total_blocks")} == {
        "role": "unified", "status": "serving", "running": 0, "waiting": 0, "free_blocks": 128, "total_blocks": 128}
    assert i0["freeness"] == 128.0  # (128 free - 0 queued) / max(1, 0 running)


async def test_migrate_a_streaming_request(served):
    http, cluster = served
    reference = (await http.post("/v1/completions", json=BODY)).json()["choices"][0]["text"]
    text, outcome = "", None
    async with http.stream("POST", "/v1/completions", json={**BODY, "stream": True}) as r:
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[len("data: "):])
            text += event["choices"][0]["text"]
            if outcome is None and len(text) > 20:
                here = cluster.locate(event["id"])
                to = "instance-1" if here == "instance-0" else "instance-0"
                resp = await http.post(f"/admin/v1/requests/{event['id']}/migrate", json={"to": to})
                assert resp.status_code == 200, resp.text
                outcome = resp.json()
                assert (outcome["from"], outcome["to"], outcome["result"]) == (here, to, "committed")
                assert outcome["stages"] >= 2 and outcome["blocks"] >= 1 and outcome["downtime_ms"] > 0
                assert cluster.locate(event["id"]) == to
    assert outcome is not None
    assert text == reference


async def test_bad_admin_calls(served):
    http, _ = served
    r = await http.post("/admin/v1/requests/nobody/migrate", json={"to": "instance-1"})
    assert r.status_code == 404 and "not in flight" in r.json()["error"]["message"]
    r = await http.post("/admin/v1/requests/nobody/migrate", json={"to": "instance-9"})
    assert r.status_code == 404 and "instance-9" in r.json()["error"]["message"]
    r = await http.post("/admin/v1/requests/nobody/migrate", json={"where": "instance-1"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("to: ")
    for verb in ("drain", "undrain"):
        r = await http.post(f"/admin/v1/instances/instance-9/{verb}")
        assert r.status_code == 404 and "instance-9" in r.json()["error"]["message"]
    r = await http.post("/admin/v1/requests/nobody/migrate", content='{"to": "instance-1"}')
    assert r.status_code == 415


async def test_drain_a_busy_instance(served):
    http, cluster = served
    bodies = [{**BODY, "prompt": f"request number {i}", "max_tokens": 200} for i in range(6)]
    references = [(await http.post("/v1/completions", json=b)).json()["choices"][0]["text"] for b in bodies]
    sent = [asyncio.create_task(http.post("/v1/completions", json=b)) for b in bodies]
    await asyncio.sleep(0.3)
    r = await http.post("/admin/v1/instances/instance-0/drain")
    assert r.status_code == 202 and r.json() == {"id": "instance-0", "status": "draining"}
    texts = [(await t).json()["choices"][0]["text"] for t in sent]
    assert texts == references
    await asyncio.sleep(1.5)  # the drained instance's next pushed snapshot
    i0 = (await instances(http))["instance-0"]
    assert (i0["status"], i0["running"], i0["waiting"], i0["free_blocks"]) == ("drained", 0, 0, 128)
    assert i0["freeness"] is None
    # new requests go elsewhere while it drains
    assert (await http.post("/v1/completions", json={**BODY, "max_tokens": 4})).status_code == 200
    r = await http.post("/admin/v1/instances/instance-0/undrain")
    assert r.status_code == 200 and r.json() == {"id": "instance-0", "status": "serving"}
    assert (await instances(http))["instance-0"]["status"] == "serving"
