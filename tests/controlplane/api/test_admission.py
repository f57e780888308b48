"""Admission control: at most `gateway.max_queued_requests` generation requests in flight; one more
is a 429 with Retry-After; a slot is freed however its request ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from controlplane.api.admission import Admission
from controlplane.api.settings import GatewaySettings
from flotilla.errors import StreamBroken
from tests.controlplane.api.conftest import MODEL, Harness, serving
from tests.controlplane.api.fakes import BLOCK, HELLO, ScriptedCluster, Step, view
from tests.controlplane.api.test_disconnect import Client

COMPLETION = {"model": MODEL, "prompt": "abc", "max_tokens": 5}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "yo"}], "max_tokens": 5}
OVERLOADED = {
    "error": {
        "message": "the gateway is serving as many requests as it admits (2, gateway.max_queued_requests); "
        "retry after a moment",
        "type": "requests",
        "param": None,
        "code": 429,
    }
}


def _admission(h: Harness) -> Admission:
    admission: Admission = h.app.state.gateway.admission
    return admission


async def _until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), 5)


async def test_one_request_past_the_limit_is_429_until_a_slot_frees():
    cluster = ScriptedCluster(script=[Step(0, [104], "h"), BLOCK])
    async with serving(cluster, settings=GatewaySettings(max_queued_requests=2)) as h:
        held = [
            asyncio.create_task(h.client.post("/v1/completions", json=COMPLETION)),
            asyncio.create_task(h.client.post("/v1/chat/completions", json={**CHAT, "stream": True})),
        ]
        await _until(lambda: len(cluster.requests) == 2)
        for path, body in (("/v1/completions", COMPLETION), ("/v1/chat/completions", CHAT)):
            resp = await h.client.post(path, json=body)
            assert (resp.status_code, resp.headers["retry-after"], resp.json()) == (429, "1", OVERLOADED)
        assert len(cluster.requests) == 2
        # the rest of the API is not counted
        assert (await h.client.get("/health")).status_code == 200
        assert (await h.client.get("/admin/v1/instances")).status_code == 200

        held[0].cancel()  # the client gives up: its slot is free again
        await asyncio.gather(held[0], return_exceptions=True)
        assert _admission(h).in_flight == 1
        cluster.script = list(HELLO)
        resp = await h.client.post("/v1/completions", json=COMPLETION)
        assert (resp.status_code, resp.json()["choices"][0]["text"]) == (200, "hi!")
        held[1].cancel()
        await asyncio.gather(held[1], return_exceptions=True)
        assert _admission(h).in_flight == 0


@pytest.mark.parametrize(
    ("prepare", "path", "kwargs", "status"),
    [
        (None, "/v1/completions", {"json": COMPLETION}, 200),
        (None, "/v1/chat/completions", {"json": {**CHAT, "stream": True}}, 200),
        (None, "/v1/completions", {"json": {**COMPLETION, "max_tokens": 0}}, 400),
        (None, "/v1/completions", {"json": {**COMPLETION, "model": "gpt"}}, 404),
        (None, "/v1/completions", {"content": json.dumps(COMPLETION)}, 415),
        (None, "/v1/completions", {"json": {**COMPLETION, "prompt": "x" * 2000}}, 413),
        ("unhealthy", "/v1/completions", {"json": COMPLETION}, 503),
        ("broken", "/v1/completions", {"json": COMPLETION}, 503),  # resumed, then given up
        ("broken", "/v1/completions", {"json": {**COMPLETION, "stream": True}}, 200),  # error event
    ],
)
async def test_every_ending_frees_the_slot(prepare, path, kwargs, status):
    cluster = ScriptedCluster()
    if prepare == "unhealthy":
        cluster.instances = [view("i0", healthy=False)]
    if prepare == "broken":
        cluster.script = [Step(0, [104], "h"), StreamBroken("output tokens 1..1 are missing")]
    async with serving(cluster, settings=GatewaySettings(max_queued_requests=1, max_body_bytes=1000)) as h:
        for _ in range(2):  # a slot not freed would make the second a 429
            assert (await h.client.post(path, **kwargs)).status_code == status
        assert _admission(h).in_flight == 0


@pytest.mark.parametrize("stream", [True, False])
async def test_a_client_that_disconnects_frees_its_slot(stream):
    cluster = ScriptedCluster(script=[Step(0, [104], "h"), BLOCK])
    async with serving(cluster, settings=GatewaySettings(max_queued_requests=1)) as h:
        client = Client(json.dumps({**COMPLETION, "stream": stream}).encode())
        call = asyncio.create_task(h.app(client.scope("/v1/completions"), client.receive, client.send))
        await asyncio.wait_for(cluster.blocked.wait(), 5)
        assert _admission(h).in_flight == 1
        client.gone.set()
        await asyncio.wait_for(call, 5)
        assert _admission(h).in_flight == 0
