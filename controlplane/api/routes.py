"""The gateway's HTTP routes: OpenAI completions and chat completions, models, health, metrics, and
vLLM's extra routes (`/ping`, `/version`, `/tokenize`, `/detokenize`).

Per generation request (`generation_router`, whose routes hold an admission slot for their whole
exchange: `AdmittedRoute`): read the JSON body (415, 413, 400: `body.read_json`), tokenize
(`prepare`, in a worker thread so the event loop keeps serving), place it (`Dispatcher.start`,
which may raise NoCapacity before any response is sent), then stream it as SSE or return one JSON
body.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from controlplane.api.admission import AdmittedRoute
from controlplane.api.body import read_json
from controlplane.api.errors import CLIENT_CLOSED_REQUEST, error_headers
from controlplane.api.formatting import ChatFormat, CompletionFormat, ResponseFormat
from controlplane.api.gateway import Gateway
from controlplane.api.openapi import error_responses, json_body
from controlplane.api.prepare import Prepared, detokenize, prepare_chat, prepare_completion, tokenize
from controlplane.api.schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    DetokenizeRequest,
    DetokenizeResponse,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
    VersionResponse,
)
from controlplane.api.streaming import ClosingStreamingResponse, sse_events, unless_disconnected, whole_body
from flotilla import __version__

router = APIRouter()
generation_router = APIRouter(route_class=AdmittedRoute)

_GENERATION_ERRORS = error_responses(400, 401, 404, 413, 415, 429, 503)


def _generation_responses(model: type[CompletionResponse | ChatCompletionResponse]) -> dict[int | str, Any]:
    ok = {
        "model": model,
        "description": "the whole response; with `stream: true`, Server-Sent Events instead: `data: "
        "{chunk}` events, then `data: [DONE]`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    return {200: ok, **_GENERATION_ERRORS}


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _respond(
    request: Request,
    gw: Gateway,
    request_id: str,
    prepared: Prepared,
    arrival_s: float,
    fmt: ResponseFormat,
    stream: bool,
    include_usage: bool,
) -> Response:
    run = gw.dispatcher.start(request_id, prepared, arrival_s)
    if stream:
        return ClosingStreamingResponse(
            sse_events(run, fmt, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    body = await unless_disconnected(request, whole_body(run, fmt))
    if body is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return JSONResponse(body.model_dump())


@generation_router.post(
    "/v1/completions",
    openapi_extra=json_body(CompletionRequest),
    responses=_generation_responses(CompletionResponse),
)
async def completions(request: Request) -> Response:
    gw = _gateway(request)
    arrival_s = gw.clock()
    req = await read_json(request, CompletionRequest, gw.settings.max_body_bytes, gw.cpu_work)
    prepared = await anyio.to_thread.run_sync(
        prepare_completion, req, gw.tokenizer, gw.model_name, gw.max_model_len, limiter=gw.cpu_work
    )
    request_id = f"cmpl-{uuid.uuid4().hex}"
    fmt = CompletionFormat(
        request_id, gw.model_name, int(time.time()), gw.tokenizer, req.logprobs is not None
    )
    return await _respond(request, gw, request_id, prepared, arrival_s, fmt, req.stream, req.include_usage)


@generation_router.post(
    "/v1/chat/completions",
    openapi_extra=json_body(ChatCompletionRequest),
    responses=_generation_responses(ChatCompletionResponse),
)
async def chat_completions(request: Request) -> Response:
    gw = _gateway(request)
    arrival_s = gw.clock()
    req = await read_json(request, ChatCompletionRequest, gw.settings.max_body_bytes, gw.cpu_work)
    prepared = await anyio.to_thread.run_sync(
        prepare_chat, req, gw.tokenizer, gw.model_name, gw.max_model_len, limiter=gw.cpu_work
    )
    request_id = f"chatcmpl-{uuid.uuid4().hex}"
    fmt = ChatFormat(request_id, gw.model_name, int(time.time()), gw.tokenizer, req.logprobs)
    return await _respond(request, gw, request_id, prepared, arrival_s, fmt, req.stream, req.include_usage)


@router.get("/v1/models", responses=error_responses(401))
async def models(request: Request) -> ModelList:
    gw = _gateway(request)
    return ModelList(data=[ModelCard(id=gw.model_name, created=gw.created, max_model_len=gw.max_model_len)])


_HEALTH_RESPONSES: dict[int | str, Any] = {
    200: {"description": "some instance can take requests"},
    503: {"description": "no instance can take requests now; `reason` says why"},
}


@router.get("/health", responses=_HEALTH_RESPONSES)
async def health(request: Request) -> JSONResponse:
    """A readiness signal: 200 while some instance can take requests (healthy and not draining),
    else 503 with a `reason` and `Retry-After`. Both count the instances, the healthy ones and the
    healthy ones that are draining."""
    views = _gateway(request).cluster.views()
    healthy = [v for v in views if v.healthy]
    draining = sum(1 for v in healthy if v.draining)
    counts = {"instances": len(views), "healthy_instances": len(healthy), "draining_instances": draining}
    if draining < len(healthy):
        return JSONResponse({"status": "ok", **counts})
    if not views:
        reason = "the cluster has no instances"
    elif not healthy:
        reason = f"no instance is healthy (0 of {len(views)})"
    else:
        reason = (f"every healthy instance is draining ({draining} of {len(views)}); "
                  "POST /admin/v1/instances/{id}/undrain serves with one again")
    return JSONResponse({"status": "unavailable", "reason": reason, **counts}, status_code=503,
                        headers=error_headers(503))


@router.get("/ping", responses=_HEALTH_RESPONSES)
@router.post("/ping", responses=_HEALTH_RESPONSES)
async def ping(request: Request) -> JSONResponse:
    """vLLM's `/ping` (SageMaker's health check), GET or POST: the same answer as `/health`."""
    return await health(request)


@router.get("/version")
async def version() -> VersionResponse:
    """The gateway's version, as vLLM's `/version` reports its own."""
    return VersionResponse(version=__version__)


@router.post("/tokenize", openapi_extra=json_body(TokenizeRequest),
             responses={200: {"model": TokenizeResponse}, **error_responses(400, 401, 404, 413, 415)})
async def tokenize_route(request: Request) -> JSONResponse:
    """vLLM's `/tokenize`: a prompt's or a chat's token ids, their count and the context length."""
    gw = _gateway(request)
    req = await read_json(request, TokenizeRequest, gw.settings.max_body_bytes, gw.cpu_work)
    answer = await anyio.to_thread.run_sync(
        tokenize, req, gw.tokenizer, gw.model_name, gw.max_model_len, limiter=gw.cpu_work
    )
    return JSONResponse(answer.model_dump())


@router.post("/detokenize", openapi_extra=json_body(DetokenizeRequest),
             responses={200: {"model": DetokenizeResponse}, **error_responses(400, 401, 404, 413, 415)})
async def detokenize_route(request: Request) -> JSONResponse:
    """vLLM's `/detokenize`: the text of token ids."""
    gw = _gateway(request)
    req = await read_json(request, DetokenizeRequest, gw.settings.max_body_bytes, gw.cpu_work)
    answer = await anyio.to_thread.run_sync(detokenize, req, gw.tokenizer, gw.model_name, limiter=gw.cpu_work)
    return JSONResponse(answer.model_dump())


@router.get("/metrics", response_class=Response, responses={
    200: {"description": "The Prometheus text exposition format.",
          "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
async def metrics(request: Request) -> Response:
    gw = _gateway(request)
    gw.metrics.set_instances(gw.cluster.views(), gw.model_name)
    return Response(gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)
