"""The gateway's HTTP routes: OpenAI completions and chat completions, models, health, metrics.

Per request: parse and validate the body, tokenize (`prepare`), place it (`Dispatcher.start`, which
may raise NoCapacity before any response is sent), then stream it as SSE or return one JSON body.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from controlplane.api.errors import parse_body
from controlplane.api.formatting import ChatFormat, CompletionFormat, ResponseFormat
from controlplane.api.gateway import Gateway
from controlplane.api.prepare import Prepared, prepare_chat, prepare_completion
from controlplane.api.schemas import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList
from controlplane.api.streaming import ClosingStreamingResponse, sse_events, unless_disconnected, whole_body

router = APIRouter()

# nginx's "client closed request": logged when a non-streaming client left before its response.
CLIENT_CLOSED_REQUEST = 499


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


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    gw = _gateway(request)
    arrival_s = gw.clock()
    req = parse_body(await request.body(), CompletionRequest)
    prepared = prepare_completion(req, gw.tokenizer, gw.model_name, gw.max_model_len)
    request_id = f"cmpl-{uuid.uuid4().hex}"
    fmt = CompletionFormat(
        request_id, gw.model_name, int(time.time()), gw.tokenizer, req.logprobs is not None
    )
    return await _respond(request, gw, request_id, prepared, arrival_s, fmt, req.stream, req.include_usage)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    gw = _gateway(request)
    arrival_s = gw.clock()
    req = parse_body(await request.body(), ChatCompletionRequest)
    prepared = prepare_chat(req, gw.tokenizer, gw.model_name, gw.max_model_len)
    request_id = f"chatcmpl-{uuid.uuid4().hex}"
    fmt = ChatFormat(request_id, gw.model_name, int(time.time()), gw.tokenizer, req.logprobs)
    return await _respond(request, gw, request_id, prepared, arrival_s, fmt, req.stream, req.include_usage)


@router.get("/v1/models")
async def models(request: Request) -> ModelList:
    gw = _gateway(request)
    return ModelList(data=[ModelCard(id=gw.model_name, created=gw.created, max_model_len=gw.max_model_len)])


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 while at least one instance is healthy, else 503 (a readiness signal)."""
    views = _gateway(request).cluster.views()
    healthy = sum(1 for v in views if v.healthy)
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "instances": len(views), "healthy_instances": healthy},
        status_code=200 if healthy else 503,
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    gw = _gateway(request)
    gw.metrics.set_instances(gw.cluster.views())
    return Response(gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)
