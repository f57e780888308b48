"""What the gateway's routes share: the cluster, tokenizer, served model, dispatcher, metrics, HTTP
settings and admission control."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controlplane.api.admission import Admission
from controlplane.api.prepare import Tokenizer
from controlplane.api.relay import Dispatcher
from controlplane.api.settings import GatewaySettings
from controlplane.observability.metrics import Metrics
from controlplane.runtime.base import Cluster


@dataclass(frozen=True)
class Gateway:
    """Per-app state, built once by `create_app`. `created` is the served model's Unix timestamp."""

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
