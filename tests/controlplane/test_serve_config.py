"""How `flotilla serve` turns the config tree into engine settings."""

import asyncio
import socket

import httpx
import pytest
import uvicorn

from controlplane.config import load_config
from controlplane.observability.metrics import Metrics, RequestTimer
from controlplane.serve import admin_access, engine_config, server_config, shutdown_summary
from flotilla.errors import ConfigError
from instances.models.loader import tiny_config
from tests.controlplane.api.conftest import make_app
from tests.controlplane.api.fakes import ScriptedCluster


def test_engine_settings_come_from_the_engine_section():
    cfg = load_config(None, {"engine.block_size": 8, "engine.num_blocks": 100, "engine.max_num_seqs": 3})
    e = engine_config(cfg, tiny_config(260))
    assert (e.block_size, e.num_blocks, e.max_num_seqs, e.max_num_batched_tokens) == (8, 100, 3, 512)
    assert e.high_priority_prefill_tokens == 128
    uncapped = load_config(None, {"engine.high_priority_prefill_tokens": None})
    assert engine_config(uncapped, tiny_config(260)).high_priority_prefill_tokens is None
    capped = load_config(None, {"engine.high_priority_prefill_tokens": 32})
    assert engine_config(capped, tiny_config(260)).high_priority_prefill_tokens == 32


def test_context_is_the_smallest_of_model_pool_and_config():
    model = tiny_config(260)  # 2048 positions
    assert engine_config(load_config(None, {}), model).max_model_len == 2048
    assert engine_config(load_config(None, {"engine.num_blocks": 64}), model).max_model_len == 1024
    assert engine_config(load_config(None, {"model.max_model_len": 300}), model).max_model_len == 300


def test_configured_context_beyond_the_model_is_refused():
    cfg = load_config(None, {"model.max_model_len": 4096, "engine.num_blocks": 4096})
    with pytest.raises(ConfigError, match="exceeds the model's 2048 positions"):
        engine_config(cfg, tiny_config(260))


def test_start_up_says_who_may_call_the_admin_api():
    assert admin_access(load_config(None, {}), {}) == (
        None,
        (
            "admin API (/admin/v1): no admin token set (admin.token or FLOTILLA_ADMIN_TOKEN), "
            "so it answers loopback clients only"
        ),
    )
    assert admin_access(load_config(None, {}), {"FLOTILLA_ADMIN_TOKEN": "t0k"}) == (
        "t0k",
        "admin API (/admin/v1): needs the bearer token of FLOTILLA_ADMIN_TOKEN",
    )
    assert admin_access(load_config(None, {"admin.token": "c0nf"}), {"FLOTILLA_ADMIN_TOKEN": "t0k"}) == (
        "c0nf",
        "admin API (/admin/v1): needs the bearer token of admin.token",
    )


def test_shutdown_summary_counts_finished_requests_and_those_in_flight():
    metrics = Metrics()
    assert shutdown_summary(metrics) == "served 0 requests; 0 in flight aborted"
    for reason in ("stop", "length", "length"):
        RequestTimer(metrics, "m", 0.0).finish(1.0, reason, 3, 4)
    RequestTimer(metrics, "other", 0.0).finish(1.0, "stop", 3, 4)
    RequestTimer(metrics, "m", 0.0)  # still running
    assert shutdown_summary(metrics) == "served 4 requests (length 2, stop 2); 1 in flight aborted"


@pytest.mark.parametrize("on", [False, True])
async def test_the_access_log_writes_a_line_per_request_when_asked(on, capfd):
    config = server_config(make_app(ScriptedCluster(), Metrics()), load_config(overrides={"gateway.access_log": on}))
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))  # its handlers write to stdout/stderr
    while not server.started:
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{sock.getsockname()[1]}/health")).status_code == 200
    server.should_exit = True
    await serving
    out, err = capfd.readouterr()
    lines = [line for line in (out + err).splitlines() if '"GET /health HTTP/1.1" 200' in line]
    assert len(lines) == (1 if on else 0), out + err
