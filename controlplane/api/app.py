"""`create_app`: the OpenAI-compatible gateway over any `Cluster`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import anyio
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from controlplane.api.admin import MigrateBody, admin_router
from controlplane.api.admission import Admission
from controlplane.api.auth import ApiKeyMiddleware
from controlplane.api.errors import install_error_handlers
from controlplane.api.gateway import Gateway, cpu_threads
from controlplane.api.openapi import install_openapi
from controlplane.api.prepare import Tokenizer
from controlplane.api.relay import Dispatcher
from controlplane.api.routes import generation_router, router
from controlplane.api.schemas import ChatCompletionRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest
from controlplane.api.settings import ADMIN_TOKEN_PATTERN, GatewaySettings, valid_admin_token
from controlplane.controller.controller import Controller
from controlplane.observability.metrics import Metrics
from controlplane.runtime.base import Cluster
from controlplane.scheduling.framework import SchedulingFramework
from flotilla.errors import ConfigError

DEFAULT_SETTINGS = GatewaySettings()


def create_app(
    cluster: Cluster,
    tokenizer: Tokenizer,
    model_name: str,
    max_model_len: int,
    framework: SchedulingFramework,
    profile: str,
    metrics: Metrics,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
    controller: Controller | None = None,
    settings: GatewaySettings = DEFAULT_SETTINGS,
    admin_token: str | None = None,
    api_key: str | None = None,
) -> FastAPI:
    """The gateway app serving `model_name` from `cluster`, placing requests with `profile`.

    `rng` (default `random.Random(0)`) is the scheduling framework's only source of chance; `clock`
    (monotonic seconds) times requests and decisions. The caller owns `cluster` and closes it.
    `controller` (None: the admin API's drain, undrain and migrate answer 501) serves the admin API,
    whose instance list adds what its migration policy exposes about each instance. `settings`: CORS,
    the body limit and admission control. `admin_token`: the bearer token the admin API requires
    (None: it answers loopback clients only; see `controlplane.api.admin`). `api_key`: the bearer
    token every `/v1/*` route, `/tokenize` and `/detokenize` require (None: none; see
    `controlplane.api.auth`).
    Raises ConfigError when `profile` is not one of `framework`'s profiles, or `admin_token` or
    `api_key` is not a token (visible ASCII, no spaces).
    """
    if admin_token is not None and not valid_admin_token(admin_token):
        raise ConfigError(f"the admin token must match {ADMIN_TOKEN_PATTERN} (visible ASCII, no spaces)")
    if api_key is not None and not valid_admin_token(api_key):
        raise ConfigError(f"the API key must match {ADMIN_TOKEN_PATTERN} (visible ASCII, no spaces)")
    dispatcher = Dispatcher(
        cluster, framework, profile, metrics, model_name, rng if rng is not None else random.Random(0), clock,
        settings.max_resumes,
    )
    app = FastAPI(title="Flotilla gateway", docs_url=None, redoc_url=None)
    app.state.gateway = Gateway(
        cluster=cluster,
        tokenizer=tokenizer,
        model_name=model_name,
        max_model_len=max_model_len,
        dispatcher=dispatcher,
        metrics=metrics,
        clock=clock,
        created=int(time.time()),
        settings=settings,
        admission=Admission(settings.max_queued_requests),
        cpu_work=anyio.CapacityLimiter(cpu_threads()),
    )
    app.state.controller = controller
    app.state.admin_token = admin_token
    install_error_handlers(app)
    app.include_router(generation_router)
    app.include_router(router)
    app.include_router(admin_router)
    install_openapi(app, [CompletionRequest, ChatCompletionRequest, MigrateBody, TokenizeRequest, DetokenizeRequest])
    if api_key is not None:  # added before CORS, so that CORS wraps it: a 401 carries CORS headers too
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["Retry-After"],
        )
    return app
