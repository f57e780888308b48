from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from controlplane.api.app import create_app
from controlplane.config import FlotillaConfig
from controlplane.observability.metrics import Metrics
from controlplane.scheduling.registry import build_framework
from tests.controlplane.api.fakes import CharTokenizer, ScriptedCluster

MODEL = "tiny"
MAX_MODEL_LEN = 64


@dataclass
class Harness:
    cluster: ScriptedCluster
    metrics: Metrics
    app: FastAPI
    client: httpx.AsyncClient

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


def make_app(
    cluster: ScriptedCluster, metrics: Metrics, profile: str = "default", **options: Any
) -> FastAPI:
    """The gateway over `cluster` with the char tokenizer; `options` go to `create_app`."""
    framework = build_framework(FlotillaConfig().scheduling.profiles)
    options.setdefault("tokenizer", CharTokenizer())
    return create_app(
        cluster, model_name=MODEL, max_model_len=MAX_MODEL_LEN, framework=framework, profile=profile,
        metrics=metrics, rng=random.Random(0), **options
    )


@contextlib.asynccontextmanager
async def serving(
    cluster: ScriptedCluster | None = None, client: tuple[str, int] = ("127.0.0.1", 123), **options: Any
) -> AsyncIterator[Harness]:
    """A Harness over a fresh app (`options` go to `create_app`), its HTTP client calling from
    `client`'s address (httpx's default: loopback)."""
    cluster = cluster if cluster is not None else ScriptedCluster()
    metrics = Metrics()
    app = make_app(cluster, metrics, **options)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield Harness(cluster, metrics, app, http)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with serving() as h:
        yield h
