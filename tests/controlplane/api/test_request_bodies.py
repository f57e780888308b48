"""Reading request bodies: the JSON content type, the size limit (declared and streamed), JSON that
Python reads but no client should send (NaN, deep nesting, lone surrogates, huge numbers), and
tokenization off the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

import httpx
import pytest

from controlplane.api.settings import GatewaySettings
from tests.controlplane.api.conftest import MODEL, Harness, serving
from tests.controlplane.api.fakes import CharTokenizer

COMPLETION = {"model": MODEL, "prompt": "abc", "max_tokens": 5}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "yo"}], "max_tokens": 5}
LIMIT = 1000


def _error(resp: httpx.Response, status: int, message: str, param: str | None = None) -> None:
    assert (resp.status_code, resp.json()) == (
        status,
        {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": status}},
    )


def _raw(harness: Harness, path: str, body: bytes | str, content_type: str | None = "application/json"):
    headers = {} if content_type is None else {"content-type": content_type}
    return harness.client.post(path, content=body, headers=headers)


@pytest.fixture
async def limited() -> AsyncIterator[Harness]:
    async with serving(settings=GatewaySettings(max_body_bytes=LIMIT)) as h:
        yield h


# ---- content type --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        (
            "text/plain",
            "the request body must be JSON: send Content-Type: application/json, not 'text/plain'",
        ),
        (
            "application/x-www-form-urlencoded",  # what `curl -d` sends
            (
                "the request body must be JSON: send Content-Type: application/json, "
                "not 'application/x-www-form-urlencoded'"
            ),
        ),
        (
            "application/jsonl",
            "the request body must be JSON: send Content-Type: application/json, not 'application/jsonl'",
        ),
        (None, "the request body must be JSON: send Content-Type: application/json"),
    ],
)
async def test_a_body_not_declared_json_is_415(harness: Harness, path, content_type, message):
    body = json.dumps(CHAT if "chat" in path else COMPLETION)
    _error(await _raw(harness, path, body, content_type), 415, message)
    assert harness.cluster.requests == []
    # JSON with parameters, in any case, is JSON
    for json_type in ("application/json; charset=utf-8", "Application/JSON", "application/json;"):
        assert (await _raw(harness, path, body, json_type)).status_code == 200


# ---- size ------------------------------------------------------------------------------------------


def _padded(size: int) -> bytes:
    """A valid completion body of exactly `size` bytes (an ignored field pads it)."""
    base = json.dumps({**COMPLETION, "user": ""}).encode()
    return base.replace(b'"user": ""', b'"user": "' + b"x" * (size - len(base)) + b'"')


class Upload:
    """A request body sent in `chunk`-byte pieces, counting how many the server pulled."""

    def __init__(self, body: bytes, chunk: int) -> None:
        self.pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.pulled += 1
            yield piece


async def test_a_declared_length_over_the_limit_is_413_before_reading(limited: Harness):
    at_the_limit = _padded(LIMIT)
    assert len(at_the_limit) == LIMIT
    assert (await _raw(limited, "/v1/completions", at_the_limit)).status_code == 200
    upload = Upload(_padded(LIMIT + 1), 100)
    resp = await limited.client.post(
        "/v1/completions",
        content=upload,
        headers={"content-type": "application/json", "content-length": str(LIMIT + 1)},
    )
    _error(
        resp, 413, "the request body is 1001 bytes; this gateway takes at most 1000 (gateway.max_body_bytes)"
    )
    assert upload.pulled == 0
    assert len(limited.cluster.requests) == 1  # the one at the limit


async def test_a_chunked_body_is_cut_off_once_past_the_limit(limited: Harness):
    upload = Upload(_padded(5 * LIMIT), 300)
    resp = await limited.client.post(
        "/v1/completions", content=upload, headers={"content-type": "application/json"}
    )
    assert "content-length" not in resp.request.headers
    _error(
        resp,
        413,
        "the request body is more than 1000 bytes; this gateway takes at most 1000 (gateway.max_body_bytes)",
    )
    assert upload.pulled == 4  # 1200 bytes: the first piece past the limit, and no more
    assert limited.cluster.requests == []
    within = Upload(_padded(LIMIT), 300)
    resp = await limited.client.post(
        "/v1/completions", content=within, headers={"content-type": "application/json"}
    )
    assert (resp.status_code, within.pulled) == (200, 4)


async def test_a_content_length_that_is_no_number_is_400(harness: Harness):
    resp = await harness.client.post(
        "/v1/completions",
        content=Upload(json.dumps(COMPLETION).encode(), 100),
        headers={"content-type": "application/json", "content-length": "12abc"},
    )
    _error(resp, 400, "Content-Length is not a number of bytes: '12abc'")


# ---- JSON Python reads but clients must not send -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"model": "tiny", "prompt": "a", "temperature": NaN}',
            "request body is not valid JSON: NaN is not a JSON number",
        ),
        (
            '{"model": "tiny", "prompt": "a", "top_p": Infinity}',
            "request body is not valid JSON: Infinity is not a JSON number",
        ),
        (
            '{"model": "tiny", "prompt": "a", "frequency_penalty": -Infinity}',
            "request body is not valid JSON: -Infinity is not a JSON number",
        ),
        (
            '{"model": "tiny", "prompt": "a", "temperature": 1e999}',
            "request body has a number beyond the range of a 64-bit float: 1e999",
        ),
        (
            '{"model": "tiny", "prompt": "a", "presence_penalty": -2e400}',
            "request body has a number beyond the range of a 64-bit float: -2e400",
        ),
        (
            '{"model": "tiny", "prompt": "a", "seed": ' + "9" * 5000 + "}",
            "request body has a number with more than 4300 digits",
        ),
        (
            '{"model": "tiny", "prompt": "a", "x": ' + "[" * 5000 + "]" * 5000 + "}",
            "request body nests arrays or objects more than 64 levels deep",
        ),
        (
            '{"model": "tiny", "prompt": "a", "x": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}",
            "request body nests arrays or objects more than 64 levels deep",
        ),
    ],
)
async def test_json_beyond_what_clients_send_is_400(harness: Harness, body, message):
    _error(await _raw(harness, "/v1/completions", body), 400, message)


async def test_nesting_is_limited_to_64_levels(harness: Harness):
    body = '{"model": "tiny", "prompt": "a", "x": ' + "[" * 63 + "]" * 63 + "}"  # 64 levels with the body
    assert (await _raw(harness, "/v1/completions", body)).status_code == 200
    body = '{"model": "tiny", "prompt": "a", "x": ' + "[" * 64 + "]" * 64 + "}"
    _error(
        await _raw(harness, "/v1/completions", body),
        400,
        "request body nests arrays or objects more than 64 levels deep",
    )


@pytest.mark.parametrize(
    ("path", "body", "where", "param", "escape"),
    [
        ("/v1/completions", r'{"model": "tiny", "prompt": "a\ud800b"}', "prompt", "prompt", r"\ud800"),
        ("/v1/completions", r'{"model": "tiny", "prompt": ["\udfff"]}', "prompt.0", "prompt.0", r"\udfff"),
        ("/v1/completions", r'{"model": "\udc00", "prompt": "a"}', "model", "model", r"\udc00"),
        (
            "/v1/completions",
            r'{"model": "tiny", "prompt": "a", "stop": ["x", "\ud83d"]}',
            "stop.1",
            "stop.1",
            r"\ud83d",
        ),
        (
            "/v1/completions",
            r'{"model": "tiny", "prompt": "a", "slo": {"\ud800": 1}}',
            "a key of slo",
            "slo",
            r"\ud800",
        ),
        (
            "/v1/completions",
            r'{"\ud800": 1, "model": "tiny", "prompt": "a"}',
            "a key of the body",
            None,
            r"\ud800",
        ),
        (
            "/v1/chat/completions",
            r'{"model": "tiny", "messages": [{"role": "user", "content": "hi \ud800"}]}',
            "messages.0.content",
            "messages.0.content",
            r"\ud800",
        ),
        (
            "/v1/chat/completions",
            (
                r'{"model": "tiny", "messages": [{"role": "user", "content": '
                r'[{"type": "text", "text": "\udbff"}]}]}'
            ),
            "messages.0.content.0.text",
            "messages.0.content.0.text",
            r"\udbff",
        ),
    ],
)
async def test_a_lone_surrogate_is_400(harness: Harness, path, body, where, param, escape):
    message = f"{where}: contains a lone UTF-16 surrogate ({escape}); text must be valid Unicode"
    _error(await _raw(harness, path, body), 400, message, param)
    assert harness.cluster.requests == []


async def test_surrogate_pairs_are_text_and_lone_surrogates_are_not(harness: Harness):
    resp = await _raw(harness, "/v1/completions", r'{"model": "tiny", "prompt": "\ud83d\ude00"}')
    assert resp.status_code == 200
    [(_, req)] = harness.cluster.requests
    assert req.prompt_token_ids[1:] == [0x1F600]
    resp = await _raw(harness, "/v1/completions", r'{"model": "tiny", "prompt": "\ude00\ud83d"}')
    message = r"prompt: contains a lone UTF-16 surrogate (\ude00); text must be valid Unicode"
    _error(resp, 400, message, "prompt")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"model": "tiny", "prompt": "\xed\xa0\x80"}',  # a surrogate written as UTF-8 bytes
            (
                "request body is not valid UTF-8: 'utf-8' codec can't decode byte 0xed in position 29: "
                "invalid continuation byte"
            ),
        ),
        (
            '{"model": "tiny", "prompt": "a"}'.encode("utf-16"),
            (
                "request body is not valid UTF-8: 'utf-8' codec can't decode byte 0xff in position 0: "
                "invalid start byte"
            ),
        ),
    ],
)
async def test_a_body_that_is_not_utf8_is_400(harness: Harness, body, message):
    _error(await _raw(harness, "/v1/completions", body), 400, message)


# ---- tokenization runs beside the event loop -------------------------------------------------------------


class GatedTokenizer(CharTokenizer):
    """A tokenizer whose encode waits (in whatever thread calls it) until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.opened_in_time: bool | None = None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        self.entered.set()
        self.opened_in_time = self.gate.wait(timeout=5)
        return super().encode(text, add_special_tokens)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"model": MODEL, "prompt": "x" * 1_000_000}),
        (
            "/v1/chat/completions",
            {"model": MODEL, "messages": [{"role": "user", "content": "x" * 1_000_000}]},
        ),
    ],
)
async def test_health_answers_while_a_long_prompt_is_tokenized(path, body):
    tokenizer = GatedTokenizer()
    async with serving(tokenizer=tokenizer) as h:
        posted = asyncio.create_task(h.client.post(path, json=body))
        assert await asyncio.to_thread(tokenizer.entered.wait, 5)
        health = await asyncio.wait_for(h.client.get("/health"), 5)  # the gate is still shut
        assert health.status_code == 200
        tokenizer.gate.set()
        resp = await posted
    assert tokenizer.opened_in_time is True  # encode waited for the test, not for its timeout
    assert resp.status_code == 400
    assert "tokens but this model's context is 64 tokens" in resp.json()["error"]["message"]


async def test_a_client_gone_while_sending_its_body_is_logged_as_499_not_500(harness: Harness):
    messages = [
        {"type": "http.request", "body": b'{"model": "tiny", "pro', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/completions",
        "raw_path": b"/v1/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "server": ("gateway", 80),
        "client": ("127.0.0.1", 1234),
    }
    await asyncio.wait_for(harness.app(scope, receive, send), 5)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [499]
    assert harness.cluster.requests == []
    assert harness.app.state.gateway.admission.in_flight == 0
