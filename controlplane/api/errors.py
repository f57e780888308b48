"""OpenAI-style error bodies for every failure the gateway reports.

Every error response is `{"error": {"message", "type", "param", "code"}}` with `code` the HTTP status.
`FlotillaError`s keep their status and type; request-body validation failures are 400s naming the
field; unknown routes and wrong methods keep their status; anything else is a 500 with a generic
message (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from controlplane.api.schemas import ErrorInfo, ErrorResponse
from flotilla.errors import FlotillaError, InvalidRequest

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def error_body(status: int, error_type: str, message: str, param: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    return ErrorResponse(
        error=ErrorInfo(message=message, type=error_type, param=param, code=status)
    ).model_dump()


def flotilla_error_body(err: FlotillaError) -> dict[str, Any]:
    return error_body(err.status_code, err.error_type, err.message, err.param)


def invalid_request_from(err: ValidationError) -> InvalidRequest:
    """An InvalidRequest naming the first offending field, e.g. `max_tokens: Input should be ...`."""
    first = err.errors()[0]
    path = ".".join(str(part) for part in first["loc"])
    return InvalidRequest(f"{path}: {first['msg']}" if path else first["msg"], param=path or None)


def parse_body(raw: bytes, model: type[M]) -> M:
    """Parse a JSON request body into `model`; InvalidRequest on malformed JSON or invalid fields."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"request body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise invalid_request_from(e) from e


async def _on_flotilla_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FlotillaError)
    if exc.status_code >= 500:
        log.warning("request %s %s failed: %s", request.method, request.url.path, exc.message)
    return JSONResponse(flotilla_error_body(exc), status_code=exc.status_code)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_type = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return JSONResponse(
        error_body(exc.status_code, error_type, str(exc.detail)),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def unexpected_error_body(where: str) -> dict[str, Any]:
    """Log the exception being handled (with traceback) and return a generic 500 body for the client."""
    log.exception("unhandled error in %s", where)
    return error_body(500, "internal_error", "internal server error; see the gateway log")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(unexpected_error_body(f"{request.method} {request.url.path}"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception type the gateway can meet to an OpenAI-style body."""
    app.add_exception_handler(FlotillaError, _on_flotilla_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
