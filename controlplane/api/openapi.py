"""The gateway's OpenAPI document: FastAPI's, plus the JSON bodies that routes parse themselves.

Routes read their bodies by hand (`body.read_json`: content type, size limit, OpenAI error bodies),
so FastAPI sees no body parameter to describe. Such a route declares its body with
`openapi_extra=json_body(Model)`, a reference to `#/components/schemas/<Model>`, and its answers
with `responses=...` (`error_responses` for the error statuses); `install_openapi` adds the body
models' JSON schemas (and those of the models they use) to the document's components.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from controlplane.api.errors import RETRY_AFTER_S
from controlplane.api.schemas import ErrorResponse

REF_PREFIX = "#/components/schemas/"

_ERRORS = {
    400: "the body or a field is invalid (the message names it)",
    401: "the bearer token (the API key; on /admin/v1, the admin token) is missing or wrong",
    403: "no admin token is configured, and the client is not on the loopback interface",
    404: "the model, instance or request does not exist",
    409: "the migration conflicts with the request's or the instances' state",
    413: "the body is larger than gateway.max_body_bytes",
    415: "the body is not declared as Content-Type: application/json",
    429: f"the gateway holds gateway.max_queued_requests requests; retry in Retry-After ({RETRY_AFTER_S}) s",
    501: "this runtime has no controller",
    502: "an instance failed",
    503: f"no instance can take the request now; retry in Retry-After ({RETRY_AFTER_S}) s",
    504: "a call to an instance timed out",
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route that parses a required JSON body as `model`."""
    schema = {"$ref": f"{REF_PREFIX}{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses` entries for the error statuses a route answers, each an OpenAI error body."""
    return {status: {"model": ErrorResponse, "description": _ERRORS[status]} for status in statuses}


def install_openapi(app: FastAPI, body_models: Sequence[type[BaseModel]]) -> None:
    """Make `app.openapi()` (served at /openapi.json) FastAPI's document with the JSON schemas of
    `body_models` (validation mode) in its components. RuntimeError, on the first call, if one
    would replace a different schema of the same name."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = FastAPI.openapi(app)  # built once, kept in app.openapi_schema
        _, defs = models_json_schema(
            [(m, "validation") for m in body_models], ref_template=f"{REF_PREFIX}{{model}}"
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in defs["$defs"].items():
            if schemas.get(name, schema) != schema:
                raise RuntimeError(f"two different OpenAPI schemas are named {name}")
            schemas[name] = schema
        return document

    app.openapi = openapi  # type: ignore[method-assign]
