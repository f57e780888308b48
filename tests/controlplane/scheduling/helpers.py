"""Builders of scheduling views for the plugin and framework tests."""

from __future__ import annotations

from typing import Any

from controlplane.scheduling.types import InstanceView, RequestView


def view(instance_id: str, **fields: Any) -> InstanceView:
    """An idle, healthy 100-block instance unless `fields` say otherwise."""
    base: dict[str, Any] = dict(
        healthy=True,
        running=0,
        waiting=0,
        free_blocks=100,
        total_blocks=100,
        block_size=16,
        tokens_in_flight=0,
        queued_prompt_tokens=0,
    )
    base.update(fields)
    return InstanceView(instance_id=instance_id, **base)


REQ = RequestView(request_id="r1", num_prompt_tokens=10, max_tokens=20)
