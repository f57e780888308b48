"""Instance death on a real local Ray, seen by clients of the gateway: 10 greedy streams of
several hundred tokens on two instances, and the busy instance lost mid-stream (its worker process
killed with SIGKILL, or its step loop failing inside an engine step). Every stream completes, each
token for token equal to a run without the failure, with no error event and each token counted
once in `usage`; the admin API shows the instance `restarting` (with none of its last numbers)
while it is, and it serves again as a fresh engine."""

from __future__ import annotations

import asyncio
import json
import os
import signal
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

ENGINE = EngineConfig(block_size=16, num_blocks=256, max_num_batched_tokens=512, max_num_seqs=16, max_model_len=1024)
MAX_TOKENS = 300
BODIES = [{"model": "tiny-llama", "prompt": f"Stream number {i} keeps going: " + "word " * (3 * i),
           "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True, "stream": True,
           "stream_options": {"include_usage": True}} for i in range(10)]


class Served:
    def __init__(self, http: httpx.AsyncClient, cluster: RayCluster, metrics: Metrics) -> None:
        self.http, self.cluster, self.metrics = http, cluster, metrics


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[Served]:
    specs = [ReplicaSpec(f"instance-{i}", "tiny-llama", ENGINE) for i in range(2)]
    cluster = await RayCluster.start(specs, num_cpus_per_instance=0.5)
    metrics = Metrics()
    controller = Controller(cluster, build_migration_policy("none", {}, 2), interval_s=0.05)
    app = create_app(cluster, load_frontend("tiny-llama").tokenizer, "tiny-llama", ENGINE.max_model_len,
                     build_framework(FlotillaConfig().scheduling.profiles), "llumnix", metrics,
                     controller=controller)
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=120)
    try:
        yield Served(http, cluster, metrics)
    finally:
        await http.aclose()
        server.should_exit = True
        await serving
        await cluster.close()


async def stream(http: httpx.AsyncClient, body: dict, progress: dict[int, int], i: int) -> tuple[str, int, list]:
    """The stream's text, its usage's completion tokens and any error events."""
    text, usage, errors = "", -1, []
    async with http.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[len("data: "):])
            if "error" in event:
                errors.append(event)
            elif event["choices"]:
                text += event["choices"][0]["text"]
                progress[i] = progress.get(i, 0) + 1
            elif event.get("usage"):
                usage = event["usage"]["completion_tokens"]
    return text, usage, errors


async def run_all(s: Served, fault=None) -> tuple[list[tuple[str, int, list]], str | None, list[str]]:
    """Every stream's result; with `fault`, the instance it hit and the admin statuses it went
    through from the fault until it served again, restarted."""
    progress: dict[int, int] = {}
    tasks = [asyncio.create_task(stream(s.http, b, progress, i)) for i, b in enumerate(BODIES)]
    if fault is None:
        return await asyncio.gather(*tasks), None, []
    while len(progress) < len(BODIES) or min(progress.values()) < 20:  # every stream is under way
        await asyncio.sleep(0.01)
    victim = max(s.cluster.views(), key=lambda v: v.running)
    await fault(s.cluster, victim.instance_id)
    statuses = asyncio.create_task(statuses_until_restarted(s, victim.instance_id, victim.steps))
    return await asyncio.gather(*tasks), victim.instance_id, await statuses


async def kill_process(cluster: RayCluster, iid: str) -> None:
    pid = await cluster.instances[iid].handle.__ray_call__.remote(lambda actor: os.getpid())
    os.kill(pid, signal.SIGKILL)


async def fail_next_step(cluster: RayCluster, iid: str) -> None:
    def arm(actor) -> None:
        def step():
            raise RuntimeError("injected: the forward pass failed")
        actor.replica.engine.step = step
    await cluster.instances[iid].handle.__ray_call__.remote(arm)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def expected(served) -> list[tuple[str, int, list]]:
    results, _, _ = await run_all(served)
    assert all(usage == MAX_TOKENS and not errors for _, usage, errors in results)
    return results


async def statuses_until_restarted(s: Served, iid: str, steps_before: int) -> list[str]:
    """The statuses `iid` shows until it serves again as a new engine (fewer steps than it had run
    before the fault). A restart can be over before the gateway notices the loss (Ray restarts a
    killed process at once), so `restarting` may come and go between two looks."""
    seen: list[str] = []
    for _ in range(600):
        entry = {i["id"]: i for i in (await s.http.get("/admin/v1/instances")).json()["instances"]}[iid]
        status = entry["status"]
        if status == "restarting":  # none of the lost instance's last numbers
            assert (entry["running"], entry["waiting"], entry["free_blocks"]) == (0, 0, 0), entry
        if not seen or seen[-1] != status:
            seen.append(status)
        view = next(v for v in s.cluster.views() if v.instance_id == iid)
        if status == "serving" and view.steps < steps_before:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"{iid} did not serve again: {seen}")


@pytest.mark.parametrize("fault", [kill_process, fail_next_step])
async def test_every_stream_survives_the_loss_of_the_busy_instance(served, expected, fault):
    before = served.metrics.registry.get_sample_value("flotilla_request_resumes_total",
                                                      {"reason": "instance_lost"}) or 0
    results, victim, seen = await run_all(served, fault)
    assert results == expected  # text token for token, usage counted once, no error event
    resumed = served.metrics.registry.get_sample_value("flotilla_request_resumes_total", {"reason": "instance_lost"})
    assert resumed - before >= 1
    assert seen[-1] == "serving" and set(seen) <= {"serving", "restarting"}, seen
    # it serves again: a request placed there answers as before
    body = {k: v for k, v in BODIES[0].items() if k not in ("stream", "stream_options")}
    for _ in range(4):  # ties rotate: within a few requests one lands on the restarted instance
        r = await served.http.post("/v1/completions", json=body)
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == expected[0][0]
    views = {v.instance_id: v for v in served.cluster.views()}
    assert views[victim].healthy and not views[victim].restarting


async def test_a_failing_instance_call_answers_without_ray_internals(served):
    """Both instances' submissions fail with a Ray remote error (its text a remote traceback with
    paths, pids and actor ids): the client gets a clean 503 after the resumes, nothing of Ray."""
    def break_submissions(actor) -> None:
        def submit(request):
            raise RuntimeError(f"injected in {__file__} at pid {os.getpid()}")
        actor._loop.submit = submit

    def mend(actor) -> None:
        del actor._loop.submit

    for inst in served.cluster.instances.values():
        await inst.handle.__ray_call__.remote(break_submissions)
    try:
        body = {k: v for k, v in BODIES[0].items() if k not in ("stream", "stream_options")}
        r = await served.http.post("/v1/completions", json=body)
    finally:
        for inst in served.cluster.instances.values():
            await inst.handle.__ray_call__.remote(mend)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    message = r.json()["error"]["message"]
    assert message.endswith("is not available; retry); send it again"), message
    for leak in ("Traceback", "ray::", "pid", "actor", "/", "\x1b["):
        assert leak not in message, (leak, message)
