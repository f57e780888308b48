"""/openapi.json describes the JSON bodies the routes parse by hand, and is a sound OpenAPI 3.1
document whose schemas accept and refuse what the gateway does."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from controlplane.api.admin import MigrateBody
from controlplane.api.schemas import ChatCompletionRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest
from tests.controlplane.api.conftest import MODEL, Harness

BODIES: dict[str, type[BaseModel]] = {
    "/v1/completions": CompletionRequest,
    "/v1/chat/completions": ChatCompletionRequest,
    "/admin/v1/requests/{request_id}/migrate": MigrateBody,
    "/tokenize": TokenizeRequest,
    "/detokenize": DetokenizeRequest,
}
NO_BODY = {"/admin/v1/instances/{instance_id}/drain", "/admin/v1/instances/{instance_id}/undrain", "/ping"}


@pytest.fixture
async def document(harness: Harness) -> dict[str, Any]:
    resp = await harness.client.get("/openapi.json")
    assert resp.status_code == 200
    doc: dict[str, Any] = resp.json()
    return doc


def _validator(doc: dict[str, Any], ref: str) -> Draft202012Validator:
    """A validator for the schema at `ref`, resolving references within the document."""
    return Draft202012Validator({"$ref": ref, "components": doc["components"]})


async def test_every_post_declares_its_json_body(document):
    posts = {path: ops["post"] for path, ops in document["paths"].items() if "post" in ops}
    assert set(posts) == set(BODIES) | NO_BODY
    for path, model in BODIES.items():
        body = posts[path]["requestBody"]
        assert body["required"] is True
        assert list(body["content"]) == ["application/json"]
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model.__name__}"
        schema = document["components"]["schemas"][model.__name__]
        assert set(schema["properties"]) == set(model.model_fields)
        assert set(schema.get("required", [])) == {
            n for n, f in model.model_fields.items() if f.is_required()
        }
    for path in NO_BODY:
        assert "requestBody" not in posts[path]


async def test_the_error_statuses_are_documented(document):
    def statuses(path: str, method: str) -> set[str]:
        return set(document["paths"][path][method]["responses"])

    assert {"200", "400", "404", "413", "415", "429", "503"} <= statuses("/v1/completions", "post")
    assert {"200", "400", "404", "413", "415", "429", "503"} <= statuses("/v1/chat/completions", "post")
    assert {"202", "401", "403", "404", "501"} <= statuses("/admin/v1/instances/{instance_id}/drain", "post")
    assert {"200", "401", "403", "404", "501"} <= statuses(
        "/admin/v1/instances/{instance_id}/undrain", "post"
    )
    assert {"200", "503"} <= statuses("/health", "get")
    assert {"200", "503"} <= statuses("/ping", "get") & statuses("/ping", "post")
    assert {"200", "400", "404", "413", "415"} <= statuses("/tokenize", "post") & statuses("/detokenize", "post")
    error = document["paths"]["/v1/completions"]["post"]["responses"]["429"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    ok = document["paths"]["/v1/completions"]["post"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/CompletionResponse"}
    assert "text/event-stream" in ok


async def test_it_is_a_sound_openapi_31_document(document):
    assert document["openapi"].startswith("3.1.")
    assert isinstance(document["info"]["title"], str) and isinstance(document["info"]["version"], str)
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    refs: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    prefix = "#/components/schemas/"
    assert {f"{prefix}{model.__name__}" for model in BODIES.values()} <= set(refs)
    assert refs and all(
        r.startswith(prefix) and r[len(prefix) :] in document["components"]["schemas"] for r in refs
    )
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            assert op["responses"], (path, method)
            assert all(isinstance(r["description"], str) for r in op["responses"].values()), (path, method)


@pytest.mark.parametrize(
    ("model", "body", "valid"),
    [
        (CompletionRequest, {"model": MODEL, "prompt": "abc", "max_tokens": 5, "priority": "HIGH"}, True),
        (CompletionRequest, {"model": MODEL, "prompt": [1, 2, 3], "temperature": 1}, True),
        (CompletionRequest, {"model": MODEL, "prompt": "a", "max_tokens": True}, False),
        (CompletionRequest, {"model": MODEL, "prompt": "a", "stream": "yes"}, False),
        (CompletionRequest, {"model": MODEL, "prompt": "a", "n": 2}, False),
        (CompletionRequest, {"model": MODEL, "prompt": "a", "seed": 2**63}, False),
        (CompletionRequest, {"model": MODEL, "prompt": "a", "priority": "urgent"}, False),
        (CompletionRequest, {"model": MODEL}, False),
        (ChatCompletionRequest, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, True),
        (
            ChatCompletionRequest,
            {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
            True,
        ),
        (ChatCompletionRequest, {"model": MODEL, "messages": []}, False),
        (ChatCompletionRequest, {"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, False),
        (MigrateBody, {"to": "i1"}, True),
        (MigrateBody, {"where": "i1"}, False),
        (TokenizeRequest, {"prompt": "hi", "add_special_tokens": False}, True),
        (TokenizeRequest, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, True),
        (TokenizeRequest, {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}, False),
        (TokenizeRequest, {"model": MODEL}, False),
        (TokenizeRequest, {"prompt": "hi", "return_token_strs": 1}, False),
        (DetokenizeRequest, {"tokens": [1, 2]}, True),
        (DetokenizeRequest, {"tokens": [-1]}, False),
        (DetokenizeRequest, {"tokens": "1"}, False),
    ],
)
async def test_the_body_schemas_agree_with_the_gateway(document, model, body, valid):
    validator = _validator(document, f"#/components/schemas/{model.__name__}")
    assert validator.is_valid(body) is valid
    try:
        model.model_validate(body)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted is valid
