"""Inputs and outputs of the scheduling framework: immutable views, never live objects."""

from __future__ import annotations

from dataclasses import dataclass, field

from instances.types import InstanceStats, Priority

InstanceId = str


InstanceView = InstanceStats
"""What the scheduler knows of one instance at decision time: its last pushed snapshot
(`instances.types.InstanceStats`), with the requests the gateway dispatched since."""


@dataclass(frozen=True)
class RequestView:
    """What the scheduler knows of a request: sizes and routing hints, never the text."""

    request_id: str
    num_prompt_tokens: int
    max_tokens: int
    priority: int = Priority.NORMAL  # instances.types.Priority; OFFLINE for the API's `offline: true`
    block_hashes: tuple[bytes, ...] = field(default=())
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
