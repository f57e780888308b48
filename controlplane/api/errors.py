"""OpenAI-style error bodies for every failure the gateway reports.

Every error response is `{"error": {"message", "type", "param", "code"}}` with `code` the HTTP status.
`FlotillaError`s keep their status and type; request-body validation failures are 400s naming the
field; unknown routes and wrong methods keep their status; anything else is a 500 with a generic
message (the traceback goes to the log, never to the client). Every 429 and 503 carries
`Retry-After: 1` (seconds), every 401 `WWW-Authenticate: Bearer`. A client that goes away while
its request body is being read gets nothing (a 499 in the log).

"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from controlplane.api.schemas import ErrorInfo, ErrorResponse
from flotilla.errors import FlotillaError, InvalidRequest

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

RETRY_AFTER_S = 1
"""The `Retry-After` of every 429 and 503 response, in seconds."""

MAX_JSON_DEPTH = 64
"""How deep a request body may nest arrays and objects (the body itself is level 1)."""

# nginx's "client closed request": logged when a client left before its response.
CLIENT_CLOSED_REQUEST = 499

_SURROGATE = re.compile("[\ud800-\udfff]")
_SCALARS = frozenset({int, float, bool, type(None)})


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


def _reject_constant(name: str) -> float:
    raise InvalidRequest(f"request body is not valid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidRequest(f"request body has a number beyond the range of a 64-bit float: {text}")
    return value


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"request body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep")


def _check_text(text: str, where: str, path: list[str | int]) -> None:
    found = _SURROGATE.search(text)
    if found is not None:
        raise InvalidRequest(
            f"{where}: contains a lone UTF-16 surrogate (\\u{ord(found.group()):04x}); "
            "text must be valid Unicode",
            param=".".join(str(part) for part in path) or None,
        )


def _check_tree(body: dict[str, Any]) -> None:
    """InvalidRequest if `body` nests deeper than MAX_JSON_DEPTH or any key or string in it holds a
    lone surrogate (JSON's `\\ud800` escapes decode to one; no encoder can write it out again)."""
    stack: list[tuple[dict[str, Any] | list[Any], list[str | int]]] = [(body, [])]
    while stack:
        value, path = stack.pop()
        if len(path) >= MAX_JSON_DEPTH:
            raise _too_deep()
        where = ".".join(str(part) for part in path)
        items: Iterable[tuple[str | int, Any]]
        if isinstance(value, dict):
            for key in value:
                _check_text(key, f"a key of {where or 'the body'}", path)
            items = value.items()
        elif _SCALARS.issuperset(map(type, value)):  # e.g. token ids: nothing to look into
            continue
        else:
            items = enumerate(value)
        for key, item in items:
            if isinstance(item, str):
                _check_text(item, f"{where}.{key}" if where else str(key), [*path, key])
            elif isinstance(item, (dict, list)):
                stack.append((item, [*path, key]))


def parse_body(raw: bytes, model: type[M]) -> M:
    """Parse a JSON request body into `model`; InvalidRequest on anything but a UTF-8 JSON object
    whose numbers are finite, whose text is valid Unicode (no lone surrogate escapes), nested at
    most MAX_JSON_DEPTH deep, and whose fields `model` accepts."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidRequest(f"request body is not valid UTF-8: {e}") from e
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as e:
        raise InvalidRequest(f"request body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise _too_deep() from e
    except ValueError as e:  # int(): a number longer than Python reads
        raise InvalidRequest(
            f"request body has a number with more than {sys.get_int_max_str_digits()} digits"
        ) from e
    if not isinstance(data, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {type(data).__name__}")
    _check_tree(data)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise invalid_request_from(e) from e


def error_headers(status: int) -> dict[str, str]:
    """The headers an error response of `status` carries: Retry-After on 429 and 503,
    WWW-Authenticate on 401."""
    if status in (429, 503):
        return {"Retry-After": str(RETRY_AFTER_S)}
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    return {}


async def _on_flotilla_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FlotillaError)
    if exc.status_code >= 500:
        log.warning("request %s %s failed: %s", request.method, request.url.path, exc.message)
    return JSONResponse(
        flotilla_error_body(exc), status_code=exc.status_code, headers=error_headers(exc.status_code)
    )


async def _on_client_disconnect(request: Request, exc: Exception) -> Response:
    log.info("client left while sending the body of %s %s", request.method, request.url.path)
    return Response(status_code=CLIENT_CLOSED_REQUEST)


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
    app.add_exception_handler(ClientDisconnect, _on_client_disconnect)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
