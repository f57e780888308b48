"""A client that goes away closes the cluster's stream (which aborts the request on its instance).

These drive the ASGI app directly, because an HTTP client over ASGITransport cannot disconnect
mid-response.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane.observability.metrics import Metrics
from tests.controlplane.api.conftest import MODEL, make_app
from tests.controlplane.api.fakes import BLOCK, HELLO, ScriptedCluster, Step


@dataclass
class Client:
    """One HTTP exchange at the ASGI level, with a switch to disconnect."""

    body: bytes
    spec_version: str = "2.3"
    fail_send_after: int | None = None  # raise OSError on that many body messages (ASGI 2.4 style)
    messages: list[dict[str, Any]] = field(default_factory=list)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    _body_sent: bool = False

    def scope(self, path: str) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": self.spec_version},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json")],
            "server": ("gateway", 80),
            "client": ("client", 1234),
        }

    async def receive(self) -> dict[str, Any]:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.fail_send_after is not None and message["type"] == "http.response.body":
            if len(self.bodies) >= self.fail_send_after:
                raise OSError("connection reset by peer")
        self.messages.append(message)

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"] == "http.response.body"]

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.messages if m["type"] == "http.response.start")


def _setup(script) -> tuple[ScriptedCluster, Metrics, Any]:
    cluster = ScriptedCluster(script=script)
    metrics = Metrics()
    return cluster, metrics, make_app(cluster, metrics)


async def _serve(app: Any, client: Client, path: str, cluster: ScriptedCluster) -> list[str]:
    """Run one exchange; return the streams the cluster saw closed by the time the app returned."""
    await app(client.scope(path), client.receive, client.send)
    return list(cluster.closed)  # read before the event loop runs anything else


def _assert_aborted(cluster: ScriptedCluster, metrics: Metrics, closed_on_return: list[str]) -> None:
    [(_, req)] = cluster.requests
    assert closed_on_return == [req.request_id]
    assert (
        metrics.registry.get_sample_value(
            "flotilla_requests_total", {"model": MODEL, "finish_reason": "abort"}
        )
        == 1
    )
    assert metrics.registry.get_sample_value("flotilla_requests_in_flight", {"model": MODEL}) == 0


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
async def test_stream_disconnect_while_waiting_for_tokens(path):
    cluster, metrics, app = _setup([Step(0, [104], "h"), BLOCK, *HELLO[1:]])
    body = {"model": MODEL, "max_tokens": 5, "stream": True}
    body |= {"prompt": "abc"} if "chat" not in path else {"messages": [{"role": "user", "content": "x"}]}
    client = Client(json.dumps(body).encode())
    call = asyncio.create_task(_serve(app, client, path, cluster))
    await asyncio.wait_for(cluster.blocked.wait(), 5)
    client.gone.set()
    closed = await asyncio.wait_for(call, 5)
    assert client.status == 200
    assert b"[DONE]" not in b"".join(client.bodies)
    _assert_aborted(cluster, metrics, closed)


async def test_stream_disconnect_detected_by_failed_send():
    cluster, metrics, app = _setup([Step(0, [104], "h"), Step(1, [105], "i"), BLOCK])
    body = {"model": MODEL, "prompt": "abc", "max_tokens": 5, "stream": True}
    client = Client(json.dumps(body).encode(), spec_version="2.4", fail_send_after=1)
    closed = await asyncio.wait_for(_serve(app, client, "/v1/completions", cluster), 5)
    assert len(client.bodies) == 1
    _assert_aborted(cluster, metrics, closed)


async def test_non_streaming_disconnect():
    cluster, metrics, app = _setup([Step(0, [104], "h"), BLOCK, *HELLO[1:]])
    client = Client(json.dumps({"model": MODEL, "prompt": "abc", "max_tokens": 5}).encode())
    call = asyncio.create_task(_serve(app, client, "/v1/completions", cluster))
    await asyncio.wait_for(cluster.blocked.wait(), 5)
    client.gone.set()
    closed = await asyncio.wait_for(call, 5)
    assert client.status == 499
    _assert_aborted(cluster, metrics, closed)


async def test_non_streaming_completes_when_client_stays():
    cluster, metrics, app = _setup(list(HELLO))
    client = Client(json.dumps({"model": MODEL, "prompt": "abc", "max_tokens": 5}).encode())
    await asyncio.wait_for(app(client.scope("/v1/completions"), client.receive, client.send), 5)
    assert client.status == 200
    assert json.loads(b"".join(client.bodies))["choices"][0]["text"] == "hi!"
    assert (
        metrics.registry.get_sample_value(
            "flotilla_requests_total", {"model": MODEL, "finish_reason": "stop"}
        )
        == 1
    )
