"""Inputs and outputs of the scheduling framework: immutable views, never live objects."""

from __future__ import annotations

from dataclasses import dataclass, field

from instances.types import Priority

InstanceId = str


@dataclass(frozen=True)
class InstanceView:
    """What the scheduler knows of one instance at decision time (from its last stats push)."""

    instance_id: InstanceId
    healthy: bool
    running: int
    waiting: int
    free_blocks: int
    total_blocks: int
    block_size: int
    tokens_in_flight: int
    queued_prompt_tokens: int
    role: str = "unified"
    draining: bool = False  # refuses new work; migrations move its requests away
    head_demand_blocks: int = 0  # KV blocks the head-of-line queued request needs (0: none queued)
    high_priority: int = 0  # HIGH-priority requests running or queued
    # requests the gateway has dispatched that the instance's last snapshot may not yet count
    pending_requests: int = 0
    pending_tokens: int = 0


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
