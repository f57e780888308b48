"""vLLM's extra routes: /ping, /version, /tokenize and /detokenize (shapes as vLLM's OpenAI server's,
vllm/entrypoints/openai/protocol.py: TokenizeCompletionRequest, TokenizeChatRequest, TokenizeResponse,
DetokenizeRequest, DetokenizeResponse)."""

from __future__ import annotations

import pytest

from controlplane.api.settings import GatewaySettings
from flotilla import __version__
from tests.controlplane.api.conftest import MAX_MODEL_LEN, MODEL, Harness, serving
from tests.controlplane.api.fakes import BOS, ScriptedCluster, view


async def test_version(harness: Harness):
    resp = await harness.client.get("/version")
    assert resp.status_code == 200
    assert resp.json() == {"version": __version__}


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_ping_answers_as_health(method):
    async with serving() as h:
        resp = await h.client.request(method, "/ping")
        assert resp.status_code == 200
        assert resp.json() == (await h.client.get("/health")).json()
    async with serving(ScriptedCluster(instances=[view("a", healthy=False)])) as h:
        resp = await h.client.request(method, "/ping")
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "1"
        assert resp.json()["reason"] == "no instance is healthy (0 of 1)"


async def test_tokenize_a_prompt(harness: Harness):
    resp = await harness.client.post("/tokenize", json={"model": MODEL, "prompt": "abc"})
    assert resp.status_code == 200
    assert resp.json() == {"count": 4, "max_model_len": MAX_MODEL_LEN, "tokens": [BOS, 97, 98, 99],
                           "token_strs": None}
    resp = await harness.client.post("/tokenize", json={"prompt": "ab", "add_special_tokens": False,
                                                        "return_token_strs": True})
    assert resp.json() == {"count": 2, "max_model_len": MAX_MODEL_LEN, "tokens": [97, 98], "token_strs": ["a", "b"]}


async def test_tokenize_a_chat(harness: Harness):
    messages = [{"role": "user", "content": "yo"}]
    resp = await harness.client.post("/tokenize", json={"messages": messages})
    assert resp.status_code == 200
    assert resp.json()["tokens"] == [ord(c) for c in "<user>yo<assistant>"]
    resp = await harness.client.post("/tokenize", json={"messages": messages, "add_generation_prompt": False,
                                                        "add_special_tokens": True})
    assert resp.json()["tokens"] == [BOS, *(ord(c) for c in "<user>yo")]


async def test_tokenize_does_not_check_the_context(harness: Harness):
    resp = await harness.client.post("/tokenize", json={"prompt": "x" * (2 * MAX_MODEL_LEN)})
    assert resp.status_code == 200
    assert resp.json()["count"] == 2 * MAX_MODEL_LEN + 1


async def test_detokenize(harness: Harness):
    resp = await harness.client.post("/detokenize", json={"model": MODEL, "tokens": [104, 105]})
    assert resp.status_code == 200
    assert resp.json() == {"prompt": "hi"}
    resp = await harness.client.post("/detokenize", json={"tokens": []})
    assert resp.json() == {"prompt": ""}


@pytest.mark.parametrize("path, body, status, param, message", [
    ("/tokenize", {"model": "other", "prompt": "a"}, 404, "model", "model 'other' does not exist"),
    ("/detokenize", {"model": "other", "tokens": [1]}, 404, "model", "model 'other' does not exist"),
    ("/tokenize", {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, 400, None, "either prompt"),
    ("/tokenize", {}, 400, None, "either prompt"),
    ("/tokenize", {"prompt": 5}, 400, "prompt", "prompt: Input should be a valid string"),
    ("/tokenize", {"prompt": "a", "add_special_tokens": 1}, 400, "add_special_tokens", "valid boolean"),
    ("/tokenize", b'{"prompt": "a\\ud800"}', 400, "prompt", "lone UTF-16 surrogate"),
    ("/tokenize", {"messages": []}, 400, "messages", "at least 1 item"),
    ("/detokenize", {"tokens": [0x110000]}, 400, "tokens", "token id 1114112 is out of range"),
    ("/detokenize", {"tokens": [-1]}, 400, "tokens.0", "greater than or equal to 0"),
    ("/detokenize", {"tokens": [1.0]}, 400, "tokens.0", "valid integer"),
    ("/detokenize", {"tokens": [0xD800]}, 400, "tokens", "lone UTF-16 surrogate"),
    ("/detokenize", {}, 400, "tokens", "Field required"),
])
async def test_bad_bodies(harness: Harness, path, body, status, param, message):
    if isinstance(body, bytes):
        resp = await harness.client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        resp = await harness.client.post(path, json=body)
    assert resp.status_code == status
    error = resp.json()["error"]
    assert error["param"] == param
    assert message in error["message"]


@pytest.mark.parametrize("path", ["/tokenize", "/detokenize"])
async def test_json_only_and_size_limited(path):
    async with serving(settings=GatewaySettings(max_body_bytes=64)) as h:
        resp = await h.client.post(path, content=b'{"prompt": "a"}', headers={"content-type": "text/plain"})
        assert resp.status_code == 415
        resp = await h.client.post(path, json={"prompt": "a" * 100, "tokens": []})
        assert resp.status_code == 413
