"""`flotilla serve`: start a cluster of engine instances and the gateway in this process."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping

import httpx
import uvicorn

from controlplane.api.app import create_app
from controlplane.api.settings import ADMIN_TOKEN_ENV
from controlplane.config import FlotillaConfig
from controlplane.controller.controller import Controller
from controlplane.observability.metrics import Metrics
from controlplane.runtime.local import LocalCluster
from controlplane.runtime.ray_cluster import RayCluster
from controlplane.scheduling.registry import build_framework, build_migration_policy
from flotilla.errors import ConfigError, FlotillaError
from instances.config import ModelConfig
from instances.engine.config import EngineConfig
from instances.models.loader import load_frontend
from instances.replica import ReplicaSpec
from instances.step_trace import trace_path


def progress(message: str) -> None:
    print(f"flotilla: {message}", file=sys.stderr, flush=True)


class Clock:
    """Seconds since start-up, for the progress lines."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.start:.1f} s"


def shutdown_summary(metrics: Metrics) -> str:
    """One line: the requests finished, by finish reason, and those still in flight (which the
    shutdown aborts)."""
    finished: dict[str, int] = {}
    for family in metrics.requests_total.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                reason = sample.labels["finish_reason"]
                finished[reason] = finished.get(reason, 0) + int(sample.value)
    in_flight = sum(int(s.value) for family in metrics.requests_in_flight.collect() for s in family.samples)
    total = sum(finished.values())
    line = f"served {total} request{'' if total == 1 else 's'}"
    if finished:
        line += " (" + ", ".join(f"{reason} {n}" for reason, n in sorted(finished.items()) if n) + ")"
    return line + f"; {in_flight} in flight aborted"


def admin_access(config: FlotillaConfig, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The admin token (`admin.token`, else FLOTILLA_ADMIN_TOKEN in `environ`, else None) and the
    start-up line saying who may call the admin API. ConfigError for a variable that is no token."""
    token = config.admin.admin_token(environ)
    if token is None:
        return None, (f"admin API (/admin/v1): no admin token set (admin.token or {ADMIN_TOKEN_ENV}), "
                      "so it answers loopback clients only")
    source = "admin.token" if config.admin.token is not None else ADMIN_TOKEN_ENV
    return token, f"admin API (/admin/v1): needs the bearer token of {source}"


def engine_config(config: FlotillaConfig, model: ModelConfig) -> EngineConfig:
    """The engine settings of `config` for `model`; the context is the smallest of the model's
    positions, the configured `model.max_model_len` and the KV pool."""
    e = config.engine
    limit = min(model.max_position_embeddings, e.num_blocks * e.block_size)
    if config.model.max_model_len is not None:
        if config.model.max_model_len > model.max_position_embeddings:
            raise ConfigError(
                f"config error: model.max_model_len: {config.model.max_model_len} exceeds the model's "
                f"{model.max_position_embeddings} positions"
            )
        limit = min(limit, config.model.max_model_len)
    return config.engine_settings(limit)


async def start_cluster(
    config: FlotillaConfig, engine: EngineConfig, on_ready: Callable[[str], None] | None = None
) -> RayCluster | LocalCluster:
    """Start `cluster.instances` replicas on the configured runtime; `on_ready(instance_id)` as each
    one is ready."""
    n, spec = config.cluster.instances, config.model.name_or_path
    trace_dir = config.cluster.step_trace_dir
    max_in_flight = config.controller.max_in_flight
    if config.cluster.runtime == "local":
        local = await LocalCluster.create(spec, n, engine, dtype=config.model.dtype, step_trace_dir=trace_dir,
                                          transfer=config.migration, max_in_flight=max_in_flight)
        for iid in local.specs:
            if on_ready is not None:
                on_ready(iid)
        return local
    specs = [
        ReplicaSpec(instance_id=f"instance-{i}", model=spec, engine=engine, dtype=config.model.dtype,
                    torch_threads=max(1, int(config.cluster.num_cpus_per_instance)),
                    step_trace=trace_path(trace_dir, f"instance-{i}"))
        for i in range(n)
    ]
    return await RayCluster.start(
        specs, num_cpus_per_instance=config.cluster.num_cpus_per_instance, address=config.cluster.ray_address,
        transfer=config.migration, max_in_flight=max_in_flight, on_ready=on_ready,
        dashboard=config.cluster.ray_dashboard,
    )


def build_controller(config: FlotillaConfig, cluster: RayCluster | LocalCluster) -> Controller:
    """The controller over `cluster`, planning with the configured migration policy."""
    c = config.controller
    policy = build_migration_policy(c.migration_policy, config.plugin_settings(), c.max_in_flight)
    return Controller(cluster, policy, interval_s=c.interval_s)


GRACEFUL_SHUTDOWN_S = 10
"""On Ctrl-C, open requests get this long to finish before their connections are closed."""


def server_config(app: object, config: FlotillaConfig) -> uvicorn.Config:
    """uvicorn's settings for `app`: warnings only, or with `gateway.access_log` a line per request
    (uvicorn writes access lines at INFO); a shutdown waits `GRACEFUL_SHUTDOWN_S` at most."""
    access_log = config.gateway.access_log
    return uvicorn.Config(app, log_level="info" if access_log else "warning", access_log=access_log,
                          timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket up front so a busy port is a one-line error, not a traceback."""
    try:
        sock = socket.create_server((host, port), reuse_port=False)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from e
    sock.set_inheritable(True)
    return sock


async def ask_once(base_url: str, model: str, text: str) -> str:
    """Send one greedy chat request through the public API and return the answer's text."""
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        r = await client.post("/v1/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": text}],
            "max_tokens": 64, "temperature": 0,
        })
        body = r.json()
        if r.status_code != 200:
            raise FlotillaError(f"the demo request failed ({r.status_code}): {body['error']['message']}")
        return body["choices"][0]["message"]["content"]


async def serve(config: FlotillaConfig, ask: str | None = None) -> None:
    """Serve until interrupted. Progress goes to stderr; `ask`'s answer to stdout."""
    host, port = config.gateway.host, config.gateway.port
    admin_token, admin_line = admin_access(config, os.environ)
    sock = bind(host, port)
    clock = Clock()
    progress(f"loading {config.model.name_or_path} ...")
    frontend = await asyncio.to_thread(load_frontend, config.model.name_or_path)
    engine = engine_config(config, frontend.config)
    progress(f"loaded {config.model.name_or_path} (tokenizer and config) [{clock}]")
    progress(f"starting {config.cluster.instances} instance(s) on the {config.cluster.runtime} runtime ...")
    cluster = await start_cluster(config, engine, on_ready=lambda iid: progress(f"{iid} ready [{clock}]"))
    controller = build_controller(config, cluster)
    metrics = Metrics()
    cluster.observers.append(metrics)
    name = config.model.served_model_name
    app = create_app(
        cluster=cluster, tokenizer=frontend.tokenizer, model_name=name, max_model_len=engine.max_model_len,
        framework=build_framework(config.scheduling.profiles, config.plugin_settings()),
        profile=config.gateway.default_profile, metrics=metrics, controller=controller,
        settings=config.gateway_settings(), admin_token=admin_token,
        api_key=config.gateway.api_key_value(os.environ),
    )
    server = uvicorn.Server(server_config(app, config))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    ticking = asyncio.create_task(controller.run())
    try:
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        base = f"http://{host}:{port}"
        progress(f"serving {name} at {base}/v1 (OpenAI API; Ctrl-C to stop) [{clock}]")
        progress(admin_line)
        if ask is not None and server.started:
            progress(f"asking: {ask}")
            print(await ask_once(base, name, ask), flush=True)
        await serving
    finally:
        progress(shutdown_summary(metrics))
        ticking.cancel()
        await cluster.close()
