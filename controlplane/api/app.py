"""`create_app`: the OpenAI-compatible gateway over any `Cluster`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from fastapi import FastAPI

from controlplane.api.admin import admin_router
from controlplane.api.errors import install_error_handlers
from controlplane.api.gateway import Gateway
from controlplane.api.prepare import Tokenizer
from controlplane.api.relay import Dispatcher
from controlplane.api.routes import router
from controlplane.controller.controller import Controller
from controlplane.observability.metrics import Metrics
from controlplane.runtime.base import Cluster
from controlplane.scheduling.framework import SchedulingFramework


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
) -> FastAPI:
    """The gateway app serving `model_name` from `cluster`, placing requests with `profile`.

    `rng` (default `random.Random(0)`) is the scheduling framework's only source of chance; `clock`
    (monotonic seconds) times requests and decisions. The caller owns `cluster` and closes it.
    `controller` (None: the admin API's drain and migrate answer 501) serves the admin API, whose
    instance list adds what its migration policy exposes about each instance.
    Raises ConfigError when `profile` is not one of `framework`'s profiles.
    """
    dispatcher = Dispatcher(
        cluster, framework, profile, metrics, model_name, rng if rng is not None else random.Random(0), clock
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
    )
    app.state.controller = controller
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(admin_router)
    return app
