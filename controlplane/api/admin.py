"""The admin REST API: instances, drains and operators' migrations.

- `GET /admin/v1/instances`: every instance's id, role, status (`serving`, `draining`, `drained`
  once a draining instance holds nothing, `unhealthy`), running and waiting requests, free and
  total KV blocks, and what the controller's migration policy exposes about it
  (`MigrationPolicy.instance_info`; the llumnix policies: `freeness`, null when draining).
- `POST /admin/v1/instances/{id}/drain`: 202; the instance accepts no new work and the controller
  migrates everything away. 404 for an unknown instance.
- `POST /admin/v1/requests/{id}/migrate` with `{"to": instance_id}`: carries the migration out and
  answers 200 with its outcome when committed; 404 (unknown request or instance), 409 (already
  moving, instances busy, the destination refused or the request finished first), 504 (a call
  timed out), 502 (an instance failed), each with the outcome's reason in the message.
Without a controller (an app built over a cluster that cannot migrate) the POSTs answer 501.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from controlplane.api.errors import error_body, parse_body
from controlplane.controller.controller import Controller
from controlplane.scheduling.types import InstanceView
from controlplane.transfer.protocol import TransferOutcome

admin_router = APIRouter(prefix="/admin/v1")

_FAILURE_STATUS = {"refused": 409, "finished": 409, "preempted": 409, "aborted": 409, "timeout": 504, "failed": 502}


class MigrateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str


def _status(v: InstanceView) -> str:
    if not v.healthy:
        return "unhealthy"
    if v.draining:
        return "drained" if v.running == v.waiting == 0 else "draining"
    return "serving"


def instance_info(v: InstanceView, controller: Controller | None) -> dict[str, object]:
    """One instance of `GET /admin/v1/instances`: its stats and what the policy exposes."""
    policy: Mapping[str, object] = {} if controller is None else controller.policy.instance_info(v)
    return {"id": v.instance_id, "role": v.role, "status": _status(v), "running": v.running, "waiting": v.waiting,
            "free_blocks": v.free_blocks, "total_blocks": v.total_blocks, **policy}


def _controller(request: Request) -> Controller | None:
    controller: Controller | None = request.app.state.controller
    return controller


def _no_controller() -> JSONResponse:
    return JSONResponse(error_body(501, "not_implemented", "migration and drain need the ray runtime "
                                   "(cluster.runtime: ray)"), status_code=501)


@admin_router.get("/instances")
async def list_instances(request: Request) -> JSONResponse:
    views = sorted(request.app.state.gateway.cluster.views(), key=lambda v: v.instance_id)
    controller = _controller(request)
    return JSONResponse({"instances": [instance_info(v, controller) for v in views]})


@admin_router.post("/instances/{instance_id}/drain")
async def drain(instance_id: str, request: Request) -> JSONResponse:
    controller = _controller(request)
    if controller is None:
        return _no_controller()
    await controller.drain(instance_id)
    return JSONResponse({"id": instance_id, "status": "draining"}, status_code=202)


def outcome_body(outcome: TransferOutcome) -> dict[str, object]:
    o = outcome.order
    return {"request_id": o.request_id, "from": o.source, "to": o.destination, "result": outcome.result,
            "detail": outcome.detail, "stages": outcome.stages, "blocks": outcome.blocks,
            "bytes": outcome.bytes, "downtime_ms": round(outcome.downtime_s * 1000, 3)}


@admin_router.post("/requests/{request_id}/migrate")
async def migrate(request_id: str, request: Request) -> JSONResponse:
    body = parse_body(await request.body(), MigrateBody)
    controller = _controller(request)
    if controller is None:
        return _no_controller()
    outcome = await controller.migrate(request_id, body.to)
    if outcome.committed:
        return JSONResponse(outcome_body(outcome))
    status = _FAILURE_STATUS[outcome.result]
    message = f"migration of {request_id} to {body.to} {outcome.result}: {outcome.detail or outcome.reason}; " \
              "the request continues where it was"
    return JSONResponse(error_body(status, "migration_error", message), status_code=status)
