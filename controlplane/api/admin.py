"""The admin REST API: instances, drains and operators' migrations.

Every route needs the admin token when one is configured (`create_app`'s `admin_token`, from
`admin.token` or FLOTILLA_ADMIN_TOKEN): `Authorization: Bearer <token>`, compared in constant time;
missing or wrong is a 401 with `WWW-Authenticate: Bearer`. Without a token the admin API answers
loopback clients only (127.0.0.0/8, ::1, `localhost`); any other client, or one the server cannot
name (a Unix socket), gets a 403. A reverse proxy on the same host makes every client loopback:
set a token behind one.

- `GET /admin/v1/instances`: every instance's id, role, status (`serving`, `draining`, `drained`
  once a draining instance holds nothing, `restarting` after it was lost, `unhealthy`), running and waiting requests, free and
  total KV blocks, and what the controller's migration policy exposes about it
  (`MigrationPolicy.instance_info`; the llumnix policies: `freeness`, null when draining).
- `POST /admin/v1/instances/{id}/drain`: 202; the instance accepts no new work and the controller
  migrates everything away. 404 for an unknown instance.
- `POST /admin/v1/instances/{id}/undrain`: 200 once the instance takes new work again (it is done at
  once, unlike a drain); its status is `serving` again if it is healthy. 404 for an unknown instance.
- `POST /admin/v1/requests/{id}/migrate` with the JSON body `{"to": instance_id}` (Content-Type
  application/json, at most `gateway.max_body_bytes`): carries the migration out and
  answers 200 with its outcome when committed; 404 (unknown request or instance), 409 (already
  moving, instances busy, the destination refused or the request finished first), 504 (a call
  timed out), 502 (an instance failed), each with the outcome's reason in the message.
Without a controller (`create_app(controller=None)`; `flotilla serve` always runs one) the POSTs
answer 501.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import Address

from controlplane.api.auth import bearer_token, token_matches
from controlplane.api.body import read_json
from controlplane.api.errors import error_body
from controlplane.api.openapi import error_responses, json_body
from controlplane.api.settings import ADMIN_TOKEN_ENV
from controlplane.controller.controller import Controller
from controlplane.scheduling.types import InstanceView
from controlplane.transfer.protocol import TransferOutcome
from flotilla.errors import Forbidden, Unauthorized


def is_loopback(client: Address | None) -> bool:
    """Whether the client's address is a loopback one (127.0.0.0/8, ::1, ::ffff:127.x, `localhost`);
    False when the server does not know it."""
    if client is None:
        return False
    if client.host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(client.host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


async def authorize(request: Request) -> None:
    """Let the call through, or raise Unauthorized (token missing or wrong) or Forbidden (no token
    configured and a client that is not loopback); see the module docstring."""
    token: str | None = request.app.state.admin_token
    if token is None:
        if not is_loopback(request.client):
            raise Forbidden(
                "the admin API answers only loopback clients while no admin token is configured; "
                f"set admin.token or {ADMIN_TOKEN_ENV} and send Authorization: Bearer <token>"
            )
        return
    given = bearer_token(request.headers.get("authorization"))
    if given is None:
        raise Unauthorized("the admin API needs the admin token: send Authorization: Bearer <token>, "
                           f"the token of admin.token or {ADMIN_TOKEN_ENV}")
    if not token_matches(given, token):
        raise Unauthorized("the admin token is wrong: send Authorization: Bearer <token>, "
                           f"the token of admin.token or {ADMIN_TOKEN_ENV}")


admin_router = APIRouter(prefix="/admin/v1", dependencies=[Depends(authorize)])

_FAILURE_STATUS = {"refused": 409, "finished": 409, "preempted": 409, "aborted": 409, "timeout": 504, "failed": 502}


class MigrateBody(BaseModel):
    """The body of `POST /admin/v1/requests/{id}/migrate`: the destination instance's id."""

    model_config = ConfigDict(extra="forbid")

    to: str


def _status(v: InstanceView) -> str:
    if v.restarting:
        return "restarting"
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
    message = "this gateway runs without a controller: no drain, undrain or migration"
    return JSONResponse(error_body(501, "not_implemented", message), status_code=501)


@admin_router.get("/instances", responses=error_responses(401, 403))
async def list_instances(request: Request) -> JSONResponse:
    views = sorted(request.app.state.gateway.cluster.views(), key=lambda v: v.instance_id)
    controller = _controller(request)
    return JSONResponse({"instances": [instance_info(v, controller) for v in views]})


@admin_router.post("/instances/{instance_id}/drain", status_code=202,
                   responses=error_responses(401, 403, 404, 501))
async def drain(instance_id: str, request: Request) -> JSONResponse:
    controller = _controller(request)
    if controller is None:
        return _no_controller()
    await controller.drain(instance_id)
    return JSONResponse({"id": instance_id, "status": "draining"}, status_code=202)


@admin_router.post("/instances/{instance_id}/undrain", responses=error_responses(401, 403, 404, 501))
async def undrain(instance_id: str, request: Request) -> JSONResponse:
    controller = _controller(request)
    if controller is None:
        return _no_controller()
    await controller.undrain(instance_id)
    return JSONResponse({"id": instance_id, "status": "serving"})


def outcome_body(outcome: TransferOutcome) -> dict[str, object]:
    o = outcome.order
    return {"request_id": o.request_id, "from": o.source, "to": o.destination, "result": outcome.result,
            "detail": outcome.detail, "stages": outcome.stages, "blocks": outcome.blocks,
            "bytes": outcome.bytes, "downtime_ms": round(outcome.downtime_s * 1000, 3)}


@admin_router.post("/requests/{request_id}/migrate", openapi_extra=json_body(MigrateBody),
                   responses=error_responses(400, 401, 403, 404, 409, 413, 415, 501, 502, 504))
async def migrate(request_id: str, request: Request) -> JSONResponse:
    gw = request.app.state.gateway
    body = await read_json(request, MigrateBody, gw.settings.max_body_bytes, gw.cpu_work)
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
