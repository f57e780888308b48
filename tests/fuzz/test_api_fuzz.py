"""Property-based fuzzing of the served OpenAPI document (schemathesis): completions, chat
completions, vLLM's extra routes (ping, version, tokenize, detokenize) and the admin API against a
live gateway over two real tiny-llama engines (the in-process runtime). No response is a 5xx, every
response matches the document, and afterwards every instance is healthy and every KV block free."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import zlib
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings

from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from controlplane.api.app import create_app
from controlplane.config import FlotillaConfig
from controlplane.controller.controller import Controller
from controlplane.observability.metrics import Metrics
from controlplane.runtime.local import LocalCluster
from controlplane.scheduling.registry import build_framework, build_migration_policy
from instances.engine.config import EngineConfig
from instances.models.loader import load_frontend

ENGINE = EngineConfig(block_size=8, num_blocks=64, max_num_batched_tokens=256, max_num_seqs=8, max_model_len=128)
EXAMPLES = 40  # per operation


class LiveGateway:
    """The gateway served by uvicorn on its own thread and event loop (schemathesis calls it with
    blocking HTTP from the test's thread)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.cluster: LocalCluster | None = None
        self.server: uvicorn.Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.cluster = await LocalCluster.create("tiny-llama", 2, ENGINE)
        controller = Controller(self.cluster, build_migration_policy("none", {}, 2), interval_s=0.05)
        app = create_app(self.cluster, load_frontend("tiny-llama").tokenizer, "tiny-llama", ENGINE.max_model_len,
                         build_framework(FlotillaConfig().scheduling.profiles), "default", Metrics(),
                         controller=controller)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        ticking = asyncio.create_task(controller.run())
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            ticking.cancel()
            await self.cluster.close()

    def start(self) -> None:
        self.thread.start()
        for _ in range(600):
            if self.server is not None and self.server.started:
                return
            time.sleep(0.05)
        raise RuntimeError("the gateway did not start")

    def views(self):
        assert self.cluster is not None and self.loop is not None
        return asyncio.run_coroutine_threadsafe(self._views(), self.loop).result(10)

    async def _views(self):
        return self.cluster.views()

    def stop(self) -> None:
        assert self.server is not None
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def gateway() -> Iterator[LiveGateway]:
    gw = LiveGateway()
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def api_schema(gateway: LiveGateway):
    return schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
"""No 5xx, and every response as the document says (its status, media type and body). Not
`positive_data_acceptance`: a body the schema allows may still be refused with a 400 for what a
schema cannot say (a prompt longer than the context, token ids past the vocabulary)."""

OPERATIONS = [
    ("POST", "/v1/completions"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/ping"),
    ("POST", "/ping"),
    ("GET", "/version"),
    ("POST", "/tokenize"),
    ("POST", "/detokenize"),
    ("GET", "/admin/v1/instances"),
    ("POST", "/admin/v1/instances/{instance_id}/drain"),
    ("POST", "/admin/v1/instances/{instance_id}/undrain"),
    ("POST", "/admin/v1/requests/{request_id}/migrate"),
]


def test_the_document_has_exactly_the_fuzzed_operations(api_schema):
    got = sorted((r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations())
    assert got == sorted(OPERATIONS)


def served_model(case):
    """Most bodies name the served model, so that they reach tokenizing, placement and the engines
    (a wrong name is a 404 before any of that)."""
    if isinstance(case.body, dict) and "model" in case.body and zlib.crc32(repr(case.body).encode()) % 8:
        case.body["model"] = "tiny-llama"
    return case


@pytest.mark.parametrize("method, path", OPERATIONS)
def test_no_server_error_and_every_response_matches_the_document(api_schema, gateway, method, path):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy().map(served_model))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def call(case) -> None:
        case.call_and_validate(base_url=gateway.url, checks=CHECKS)

    call()


def test_afterwards_every_instance_is_healthy_and_every_block_free(gateway):
    for _ in range(200):  # the last streams' aborts land within a step or two
        views = gateway.views()
        if all(v.running == v.waiting == 0 for v in views):
            break
        time.sleep(0.05)
    assert [(v.healthy, v.draining, v.running, v.waiting, v.free_blocks) for v in views] == \
        [(True, False, 0, 0, ENGINE.num_blocks)] * 2
