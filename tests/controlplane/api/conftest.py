from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

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


def make_app(cluster: ScriptedCluster, metrics: Metrics, profile: str = "default") -> FastAPI:
    framework = build_framework(FlotillaConfig().scheduling.profiles)
    return create_app(
        cluster, CharTokenizer(), MODEL, MAX_MODEL_LEN, framework, profile, metrics, rng=random.Random(0)
    )


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    cluster = ScriptedCluster()
    metrics = Metrics()
    app = make_app(cluster, metrics)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield Harness(cluster, metrics, app, client)
