"""What the gateway's routes share: the cluster, tokenizer, served model, dispatcher, metrics, HTTP
settings and admission control."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from controlplane.api.admission import Admission
from controlplane.api.prepare import Tokenizer
from controlplane.api.relay import Dispatcher
from controlplane.api.settings import GatewaySettings
from controlplane.observability.metrics import Metrics
from controlplane.runtime.base import Cluster


@dataclass(frozen=True)
class Gateway:
    """Per-app state, built once by `create_app`. `created` is the served model's Unix timestamp.
    `cpu_work` bounds the worker threads that parse bodies and tokenize prompts (`cpu_threads()`),
    so that the event loop keeps a CPU while megabyte prompts are being read."""

    cluster: Cluster
    tokenizer: Tokenizer
    model_name: str
    max_model_len: int
    dispatcher: Dispatcher
    metrics: Metrics
    clock: Callable[[], float]
    created: int
    settings: GatewaySettings
    admission: Admission
    cpu_work: anyio.CapacityLimiter


def cpu_threads() -> int:
    """Worker threads for a gateway's CPU work: one fewer than this process may use, at least one."""
    return max(1, len(os.sched_getaffinity(0)) - 1)
