"""The gateway's HTTP layer over a scripted cluster: bodies, streams, errors, metrics."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter

import httpx
import pytest

from controlplane.api.app import create_app
from controlplane.config import FlotillaConfig
from controlplane.observability.metrics import Metrics
from controlplane.scheduling.registry import ProfileConfig, build_framework
from controlplane.scheduling.types import RequestView
from flotilla.errors import ConfigError, InstanceUnavailable, StreamBroken
from instances.types import FinishReason, Priority, Resumed, SamplingParams, TokenLogprob
from tests.controlplane.api.conftest import MAX_MODEL_LEN, MODEL, Harness, serving
from tests.controlplane.api.fakes import BLOCK, BOS, EOS, CharTokenizer, ScriptedCluster, Step, view

COMPLETION = {"model": MODEL, "prompt": "abc", "max_tokens": 5}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "yo"}], "max_tokens": 5}
USAGE = {
    "prompt_tokens": 4,
    "completion_tokens": 3,
    "total_tokens": 7,
    "prompt_tokens_details": {"cached_tokens": 16},
}


def _events(text: str) -> list[dict | str]:
    """Parse an SSE body into its JSON payloads, with "[DONE]" kept as a string."""
    assert text.endswith("\n\n")
    out: list[dict | str] = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: ")
        data = block[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def _error(resp, status: int, error_type: str, message: str, param: str | None = None) -> None:
    assert resp.status_code == status
    assert resp.json() == {"error": {"message": message, "type": error_type, "param": param, "code": status}}


async def test_completion(harness: Harness):
    resp = await harness.client.post("/v1/completions", json=COMPLETION)
    assert resp.status_code == 200
    body = resp.json()
    assert re.fullmatch(r"cmpl-[0-9a-f]{32}", body.pop("id"))
    assert isinstance(body.pop("created"), int)
    assert body == {
        "object": "text_completion",
        "model": MODEL,
        "choices": [{"index": 0, "text": "hi!", "logprobs": None, "finish_reason": "stop"}],
        "usage": USAGE,
    }
    [(_, req)] = harness.cluster.requests
    assert req.prompt_token_ids == [BOS, 97, 98, 99]
    assert req.sampling == SamplingParams(max_tokens=5)
    assert (req.priority, req.slo_ttft_s, req.slo_tpot_s) == (Priority.NORMAL, None, None)
    assert req.eos_token_ids == (EOS,)
    assert harness.cluster.closed == [req.request_id]


async def test_completion_fields_reach_the_engine(harness: Harness):
    body = {
        "model": MODEL,
        "prompt": [5, 6, 7],
        "temperature": 0,
        "top_p": 0.5,
        "top_k": -1,
        "seed": 9,
        "stop": "x",
        "stop_token_ids": [3],
        "ignore_eos": True,
        "logprobs": 2,
        "priority": "Low",
        "slo": {"ttft_ms": 250, "tpot_ms": 20.5},
        "echo": False,
        "frequency_penalty": 0.0,
    }
    assert (await harness.client.post("/v1/completions", json=body)).status_code == 200
    [(_, req)] = harness.cluster.requests
    assert req.prompt_token_ids == [5, 6, 7]
    assert (req.priority, req.slo_ttft_s, req.slo_tpot_s) == (Priority.LOW, 0.25, 0.0205)
    assert req.sampling == SamplingParams(
        max_tokens=MAX_MODEL_LEN - 3,
        temperature=0.0,
        top_k=0,
        top_p=0.5,
        seed=9,
        stop=("x",),
        stop_token_ids=(3,),
        ignore_eos=True,
        logprobs=2,
    )


async def test_a_temperature_below_1e5_is_greedy_and_the_bounds_are_inclusive(harness: Harness):
    cases = [
        ({"temperature": 0.99e-5}, {"temperature": 0.0}),  # greedy, as vLLM
        ({"temperature": 1e-5}, {"temperature": 1e-5}),
        ({"temperature": 1}, {"temperature": 1.0}),  # an integer is a number
        ({"temperature": 100}, {"temperature": 100.0}),
        ({"top_p": 1e-8}, {"top_p": 1e-8}),
        ({"seed": 2**63 - 1}, {"seed": 2**63 - 1}),
        ({"seed": -(2**63)}, {"seed": -(2**63)}),
    ]
    for fields, _ in cases:
        assert (await harness.client.post("/v1/completions", json={**COMPLETION, **fields})).status_code == 200
    assert [req.sampling for _, req in harness.cluster.requests] == [
        SamplingParams(max_tokens=5, **sampling) for _, sampling in cases
    ]


async def test_chat_offline_runs_in_the_offline_class(harness: Harness):
    body = {**CHAT, "offline": True, "priority": "low", "slo": {"tpot_ms": 100}}
    assert (await harness.client.post("/v1/chat/completions", json=body)).status_code == 200
    [(_, req)] = harness.cluster.requests
    assert (req.priority, req.slo_ttft_s, req.slo_tpot_s) == (Priority.OFFLINE, None, 0.1)


async def test_scheduler_and_engine_see_class_slo_and_gateway_arrival():
    cluster = ScriptedCluster()
    framework = build_framework(FlotillaConfig().scheduling.profiles)
    seen: list[RequestView] = []
    schedule = framework.schedule

    def recording_schedule(profile, req, views, rng):
        seen.append(req)
        return schedule(profile, req, views, rng)

    framework.schedule = recording_schedule  # type: ignore[method-assign]
    ticks = iter(float(t) for t in range(100, 200))
    app = create_app(
        cluster,
        CharTokenizer(),
        MODEL,
        MAX_MODEL_LEN,
        framework,
        "default",
        Metrics(),
        clock=lambda: next(ticks),
    )
    body = {**COMPLETION, "priority": "HIGH", "slo": {"ttft_ms": 500}}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        assert (await client.post("/v1/completions", json=body)).status_code == 200
    [placed] = seen
    assert (placed.priority, placed.slo_ttft_s, placed.slo_tpot_s) == (Priority.HIGH, 0.5, None)
    [(_, req)] = cluster.requests
    assert req.arrival_time == 100.0  # the gateway's clock when the request arrived
    assert (req.priority, req.slo_ttft_s, req.slo_tpot_s) == (Priority.HIGH, 0.5, None)


async def test_max_tokens_defaults_to_rest_of_context(harness: Harness):
    body = {"model": MODEL, "prompt": "abc"}
    assert (await harness.client.post("/v1/completions", json=body)).status_code == 200
    assert harness.cluster.requests[0][1].sampling.max_tokens == MAX_MODEL_LEN - 4


async def test_completion_stream_with_usage(harness: Harness):
    body = {**COMPLETION, "stream": True, "stream_options": {"include_usage": True}}
    resp = await harness.client.post("/v1/completions", json=body)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = _events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("cmpl-")
    assert [(c["object"], c["choices"], c["usage"]) for c in chunks] == [
        ("text_completion", [{"index": 0, "text": "hi", "logprobs": None, "finish_reason": None}], None),
        ("text_completion", [{"index": 0, "text": "!", "logprobs": None, "finish_reason": "stop"}], None),
        ("text_completion", [], USAGE),
    ]


async def test_completion_stream_without_usage(harness: Harness):
    resp = await harness.client.post("/v1/completions", json={**COMPLETION, "stream": True})
    events = _events(resp.text)
    assert [e["choices"][0]["text"] for e in events[:-1]] == ["hi", "!"]
    assert events[-1] == "[DONE]"


async def test_completion_logprobs(harness: Harness):
    harness.cluster.script = [
        Step(0, [104], "h", logprobs=[TokenLogprob(104, -0.5, {104: -0.5, 105: -1.5})]),
        Step(1, [105], "i", FinishReason.LENGTH, logprobs=[TokenLogprob(105, -0.25, {105: -0.25})]),
    ]
    resp = await harness.client.post("/v1/completions", json={**COMPLETION, "logprobs": 2})
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["logprobs"] == {
        "tokens": ["h", "i"],
        "token_logprobs": [-0.5, -0.25],
        "top_logprobs": [{"h": -0.5, "i": -1.5}, {"i": -0.25}],
    }


async def test_chat(harness: Harness):
    resp = await harness.client.post("/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200
    body = resp.json()
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", body.pop("id"))
    body.pop("created")
    assert body == {
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi!"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {**USAGE, "prompt_tokens": 19, "total_tokens": 22},
    }
    [(_, req)] = harness.cluster.requests
    assert req.prompt_token_ids == [ord(c) for c in "<user>yo<assistant>"]


async def test_chat_content_parts_and_max_completion_tokens(harness: Harness):
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        ],
        "max_tokens": 3,
        "max_completion_tokens": 4,
    }
    assert (await harness.client.post("/v1/chat/completions", json=body)).status_code == 200
    [(_, req)] = harness.cluster.requests
    assert req.prompt_token_ids == [ord(c) for c in "<system>s<user>a\nb<assistant>"]
    assert req.sampling.max_tokens == 4


async def test_chat_stream_with_usage(harness: Harness):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    events = _events((await harness.client.post("/v1/chat/completions", json=body)).text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert [(c["choices"], c["usage"]) for c in chunks] == [
        (
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
            None,
        ),
        (
            [{"index": 0, "delta": {"role": None, "content": "hi"}, "logprobs": None, "finish_reason": None}],
            None,
        ),
        (
            [
                {
                    "index": 0,
                    "delta": {"role": None, "content": "!"},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            None,
        ),
        ([], {**USAGE, "prompt_tokens": 19, "total_tokens": 22}),
    ]


async def test_chat_logprobs(harness: Harness):
    harness.cluster.script = [
        Step(0, [104], "h", FinishReason.STOP, logprobs=[TokenLogprob(104, -0.5, {105: -2.0, 104: -0.5})])
    ]
    body = {**CHAT, "logprobs": True, "top_logprobs": 2}
    resp = await harness.client.post("/v1/chat/completions", json=body)
    assert resp.json()["choices"][0]["logprobs"] == {
        "content": [
            {
                "token": "h",
                "logprob": -0.5,
                "bytes": [104],
                "top_logprobs": [
                    {"token": "h", "logprob": -0.5, "bytes": [104]},
                    {"token": "i", "logprob": -2.0, "bytes": [105]},
                ],
            }
        ]
    }
    assert harness.cluster.requests[0][1].sampling.logprobs == 2


async def test_a_request_that_keeps_losing_its_instance_fails_after_max_resumes(harness: Harness):
    harness.cluster.script = [Step(0, [104], "h"), InstanceUnavailable("instance i0 was lost; retry")]
    harness.cluster.then = [[Step(1, [105], "i"), StreamBroken("request r1: output tokens 2..2 are missing")],
                            [InstanceUnavailable("instance i1 was lost; retry")]]
    resp = await harness.client.post("/v1/completions", json=COMPLETION)
    rid = harness.cluster.requests[0][1].request_id
    _error(resp, 503, "service_unavailable",
           f"request {rid} lost its instance 3 times (last: instance i1 was lost; retry); send it again")
    resumed = [r.resumed for _, r in harness.cluster.requests]
    assert resumed == [None, Resumed([104], None, 1), Resumed([104, 105], None, 2)]
    assert harness.sample("flotilla_request_resumes_total", reason="instance_lost") == 1
    assert harness.sample("flotilla_request_resumes_total", reason="stream_broken") == 1
    assert harness.sample("flotilla_requests_total", model=MODEL, finish_reason="error") == 1
    assert harness.cluster.closed == [rid] * 3


async def test_a_lost_instance_is_invisible_in_the_stream(harness: Harness):
    harness.cluster.script = [Step(0, [104], "h"), InstanceUnavailable("instance i0 was lost; retry")]
    harness.cluster.then = [[Step(1, [105], "i"), Step(2, [33], "!", FinishReason.STOP)]]
    resp = await harness.client.post("/v1/completions", json={**COMPLETION, "stream": True,
                                                              "stream_options": {"include_usage": True}})
    events = _events(resp.text)
    assert "".join(e["choices"][0]["text"] for e in events if isinstance(e, dict) and e["choices"]) == "hi!"
    assert events[-2]["usage"]["completion_tokens"] == 3
    assert [e for e in events if isinstance(e, dict) and "error" in e] == []
    assert events[-1] == "[DONE]"
    (_, first), (_, second) = harness.cluster.requests
    assert (first.resumed, second.resumed) == (None, Resumed([104], None, 1))
    assert second.prompt_token_ids == first.prompt_token_ids
    assert harness.sample("flotilla_request_resumes_total", reason="instance_lost") == 1
    assert harness.sample("flotilla_requests_total", model=MODEL, finish_reason="stop") == 1


async def test_a_request_the_engine_cannot_continue_is_an_error_event(harness: Harness):
    harness.cluster.script = [Step(0, [104], "h"), Step(1, [], "", FinishReason.ERROR, error="sampling failed: boom")]
    resp = await harness.client.post("/v1/completions", json={**COMPLETION, "stream": True})
    events = _events(resp.text)
    rid = harness.cluster.requests[0][1].request_id
    assert events[-2:] == [
        {"error": {"message": f"the engine could not continue request {rid}: sampling failed: boom", "type": "internal_error",
                   "param": None, "code": 500}},
        "[DONE]",
    ]
    assert len(harness.cluster.requests) == 1  # not resumed: it would fail again


async def test_unexpected_error_hides_details(harness: Harness):
    harness.cluster.script = [RuntimeError("secret traceback detail")]
    resp = await harness.client.post("/v1/completions", json=COMPLETION)
    _error(resp, 500, "internal_error", "internal server error; see the gateway log")
    stream = await harness.client.post("/v1/completions", json={**COMPLETION, "stream": True})
    assert _events(stream.text) == [
        {
            "error": {
                "message": "internal server error; see the gateway log",
                "type": "internal_error",
                "param": None,
                "code": 500,
            }
        },
        "[DONE]",
    ]
    assert "secret" not in resp.text + stream.text


async def test_instance_unavailable_is_503(harness: Harness):
    harness.cluster.script = [InstanceUnavailable("instance i0 is gone; retry")]
    resp = await harness.client.post("/v1/completions", json=COMPLETION)
    rid = harness.cluster.requests[0][1].request_id
    _error(resp, 503, "service_unavailable",
           f"request {rid} lost its instance 3 times (last: instance i0 is gone; retry); send it again")
    assert resp.headers["retry-after"] == "1"


async def test_no_healthy_instance_is_503(harness: Harness):
    harness.cluster.instances = [view("i0", healthy=False)]
    resp = await harness.client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    assert resp.json()["error"]["type"] == "service_unavailable"
    assert resp.json()["error"]["message"].endswith(
        "filter 'healthy' of profile 'default' rejected all 1 candidates"
    )
    assert harness.cluster.requests == []
    assert harness.sample("flotilla_scheduling_decision_seconds_count") == 1


@pytest.mark.parametrize(
    ("body", "status", "error_type", "message", "param"),
    [
        (
            {**COMPLETION, "model": "gpt-4"},
            404,
            "not_found_error",
            "model 'gpt-4' does not exist; this server serves 'tiny'",
            "model",
        ),
        ({"prompt": "abc"}, 400, "invalid_request_error", "model: Field required", "model"),
        ({"model": MODEL}, 400, "invalid_request_error", "prompt: Field required", "prompt"),
        (
            {**COMPLETION, "max_tokens": 0},
            400,
            "invalid_request_error",
            "max_tokens: Input should be greater than or equal to 1",
            "max_tokens",
        ),
        (
            {**COMPLETION, "temperature": -1},
            400,
            "invalid_request_error",
            "temperature: Input should be greater than or equal to 0",
            "temperature",
        ),
        (
            {**COMPLETION, "top_p": 0},
            400,
            "invalid_request_error",
            "top_p: Input should be greater than or equal to 0.00000001",
            "top_p",
        ),
        ({**COMPLETION, "n": 2}, 400, "invalid_request_error", "n: only n=1 is supported, got 2", "n"),
        (
            {**COMPLETION, "prompt": ["a", "b"]},
            400,
            "invalid_request_error",
            "prompt: only one prompt per request is supported",
            "prompt",
        ),
        (
            {**COMPLETION, "max_tokens": 61},
            400,
            "invalid_request_error",
            (
                "this model's maximum context length is 64 tokens, but 65 were requested (4 in the prompt, "
                "61 for output); reduce the prompt or max_tokens"
            ),
            "max_tokens",
        ),
        (
            {**COMPLETION, "prompt": "x" * 63, "max_tokens": None},
            400,
            "invalid_request_error",
            (
                "the prompt has 64 tokens but this model's context is 64 tokens, leaving no room for output; "
                "shorten the prompt"
            ),
            "prompt",
        ),
        (
            {**COMPLETION, "stream_options": {"include_usage": True}},
            400,
            "invalid_request_error",
            "stream_options: only allowed when stream is true",
            "stream_options",
        ),
        (
            {**COMPLETION, "priority": 2},
            400,
            "invalid_request_error",
            'priority: must be one of "high", "normal", "low", got 2',
            "priority",
        ),
        (
            {**COMPLETION, "priority": "urgent"},
            400,
            "invalid_request_error",
            'priority: must be one of "high", "normal", "low", got "urgent"',
            "priority",
        ),
        (
            {**COMPLETION, "slo": {"ttft_ms": 0}},
            400,
            "invalid_request_error",
            "slo.ttft_ms: Input should be greater than 0",
            "slo.ttft_ms",
        ),
        (
            {**COMPLETION, "slo": {"tpot_ms": "5"}},
            400,
            "invalid_request_error",
            "slo.tpot_ms: Input should be a valid number",
            "slo.tpot_ms",
        ),
        (
            {**COMPLETION, "slo": {"ttft_ms": 100, "deadline_ms": 5}},
            400,
            "invalid_request_error",
            'slo: unknown key "deadline_ms"; slo takes ttft_ms and tpot_ms',
            "slo",
        ),
        (
            {**COMPLETION, "offline": True, "priority": "high"},
            400,
            "invalid_request_error",
            'offline: an offline request runs in the lowest class; it conflicts with priority "high"',
            "offline",
        ),
        *[
            ({**COMPLETION, field: value}, 400, "invalid_request_error", f"{field}: {message}", field)
            for field, value, message in [
                ("max_tokens", True, "Input should be a valid integer"),
                ("max_tokens", 5.0, "Input should be a valid integer"),
                ("max_tokens", "5", "Input should be a valid integer"),
                ("stream", "yes", "Input should be a valid boolean"),
                ("stream", 1, "Input should be a valid boolean"),
                ("n", 1.5, "Input should be a valid integer"),
                ("n", True, "Input should be a valid integer"),
                ("top_k", 2.0, "Input should be a valid integer"),
                ("logprobs", True, "Input should be a valid integer"),
                ("ignore_eos", "true", "Input should be a valid boolean"),
                ("temperature", True, "Input should be a valid number"),
                ("temperature", "0.5", "Input should be a valid number"),
                ("temperature", 100.5, "Input should be less than or equal to 100"),
                ("top_p", 1e-9, "Input should be greater than or equal to 0.00000001"),
                ("seed", 2**63, "Input should be less than or equal to 9223372036854775807"),
                ("seed", -(2**63) - 1, "Input should be greater than or equal to -9223372036854775808"),
                ("seed", 1.0, "Input should be a valid integer"),
            ]
        ],
        (
            {**COMPLETION, "stop_token_ids": [3, 4.0]},
            400,
            "invalid_request_error",
            "stop_token_ids.1: Input should be a valid integer",
            "stop_token_ids.1",
        ),
        (
            {**COMPLETION, "stream": True, "stream_options": {"include_usage": 1}},
            400,
            "invalid_request_error",
            "stream_options.include_usage: Input should be a valid boolean",
            "stream_options.include_usage",
        ),
    ],
)
async def test_completion_bad_input(harness: Harness, body, status, error_type, message, param):
    _error(await harness.client.post("/v1/completions", json=body), status, error_type, message, param)
    assert harness.cluster.requests == []


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        (
            {**CHAT, "messages": []},
            "messages: List should have at least 1 item after validation, not 0",
            "messages",
        ),
        (
            {**CHAT, "messages": [{"role": "robot", "content": "x"}]},
            "messages.0.role: Input should be 'system', 'developer', 'user', 'assistant' or 'tool'",
            "messages.0.role",
        ),
        (
            {**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            'messages.0.content: only text content parts (type "text") are supported',
            "messages.0.content",
        ),
        (
            {**CHAT, "max_completion_tokens": 0},
            "max_completion_tokens: Input should be greater than or equal to 1",
            "max_completion_tokens",
        ),
        ({**CHAT, "top_logprobs": 3}, "top_logprobs: only allowed when logprobs is true", "top_logprobs"),
        (
            {**CHAT, "logprobs": True, "top_logprobs": 21},
            "top_logprobs: Input should be less than or equal to 20",
            "top_logprobs",
        ),
        (
            {**CHAT, "priority": "NORMAL", "offline": "maybe"},
            "offline: Input should be a valid boolean",
            "offline",
        ),
        (
            {**CHAT, "priority": "High", "offline": True},
            'offline: an offline request runs in the lowest class; it conflicts with priority "high"',
            "offline",
        ),
        ({**CHAT, "slo": 200}, "slo: Input should be a valid dictionary or instance of SLO", "slo"),
        ({**CHAT, "logprobs": 1}, "logprobs: Input should be a valid boolean", "logprobs"),
        (
            {**CHAT, "logprobs": True, "top_logprobs": 2.0},
            "top_logprobs: Input should be a valid integer",
            "top_logprobs",
        ),
        (
            {**CHAT, "max_completion_tokens": True},
            "max_completion_tokens: Input should be a valid integer",
            "max_completion_tokens",
        ),
    ],
)
async def test_chat_bad_input(harness: Harness, body, message, param):
    _error(
        await harness.client.post("/v1/chat/completions", json=body),
        400,
        "invalid_request_error",
        message,
        param,
    )


async def test_malformed_json(harness: Harness):
    resp = await harness.client.post(
        "/v1/completions", content=b'{"model": "tiny",', headers={"content-type": "application/json"}
    )
    _error(
        resp,
        400,
        "invalid_request_error",
        "request body is not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 18 (char 17)",
    )


async def test_body_must_be_an_object(harness: Harness):
    resp = await harness.client.post("/v1/chat/completions", json=[1, 2])
    _error(resp, 400, "invalid_request_error", "request body must be a JSON object, got list")


async def test_unknown_route_and_wrong_method(harness: Harness):
    _error(await harness.client.get("/v1/nothing"), 404, "not_found_error", "Not Found")
    _error(await harness.client.get("/v1/completions"), 405, "invalid_request_error", "Method Not Allowed")


async def test_models(harness: Harness):
    body = (await harness.client.get("/v1/models")).json()
    assert body["object"] == "list"
    [card] = body["data"]
    assert isinstance(card.pop("created"), int)
    assert card == {"id": MODEL, "object": "model", "owned_by": "flotilla", "max_model_len": MAX_MODEL_LEN}


async def test_health_ok_while_some_instance_takes_requests(harness: Harness):
    resp = await harness.client.get("/health")
    assert (resp.status_code, resp.json()) == (
        200,
        {"status": "ok", "instances": 2, "healthy_instances": 2, "draining_instances": 0},
    )
    harness.cluster.instances = [view("i0", healthy=False), view("i1", draining=True), view("i2")]
    resp = await harness.client.get("/health")
    assert (resp.status_code, resp.json()) == (
        200,
        {"status": "ok", "instances": 3, "healthy_instances": 2, "draining_instances": 1},
    )
    assert "retry-after" not in resp.headers


@pytest.mark.parametrize(
    ("instances", "reason", "counts"),
    [
        ([], "the cluster has no instances", (0, 0, 0)),
        ([view("i0", healthy=False)], "no instance is healthy (0 of 1)", (1, 0, 0)),
        (
            [view("i0", draining=True), view("i1", healthy=False, draining=True), view("i2", draining=True)],
            (
                "every healthy instance is draining (2 of 3); "
                "POST /admin/v1/instances/{id}/undrain serves with one again"
            ),
            (3, 2, 2),
        ),
    ],
)
async def test_health_unavailable_says_why(harness: Harness, instances, reason, counts):
    harness.cluster.instances = instances
    resp = await harness.client.get("/health")
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    total, healthy, draining = counts
    assert resp.json() == {
        "status": "unavailable",
        "reason": reason,
        "instances": total,
        "healthy_instances": healthy,
        "draining_instances": draining,
    }


async def test_metrics_after_requests(harness: Harness):
    await harness.client.post("/v1/completions", json=COMPLETION)
    await harness.client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    resp = await harness.client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert 'flotilla_instance_free_blocks{instance="i0"} 100.0' in resp.text
    assert harness.sample("flotilla_requests_total", model=MODEL, finish_reason="stop") == 2
    assert harness.sample("flotilla_requests_in_flight", model=MODEL) == 0
    assert harness.sample("flotilla_prompt_tokens_total", model=MODEL) == 4 + 19
    assert harness.sample("flotilla_generation_tokens_total", model=MODEL) == 6
    assert harness.sample("flotilla_request_ttft_seconds_count", model=MODEL) == 2
    assert harness.sample("flotilla_request_tpot_seconds_count", model=MODEL) == 2
    assert harness.sample("flotilla_request_e2e_seconds_count", model=MODEL) == 2
    assert harness.sample("flotilla_scheduling_decision_seconds_count") == 2


async def test_requests_are_placed_by_the_profile():
    cluster = ScriptedCluster(instances=[view("i1"), view("i0"), view("i2", healthy=False)])
    framework = build_framework({"rr": ProfileConfig(picker="round_robin")})
    app = create_app(cluster, CharTokenizer(), MODEL, MAX_MODEL_LEN, framework, "rr", Metrics())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for _ in range(3):
            assert (await client.post("/v1/completions", json=COMPLETION)).status_code == 200
    assert [iid for iid, _ in cluster.requests] == ["i0", "i1", "i0"]


@pytest.mark.parametrize("profile", ["llumnix", "default"])
async def test_a_burst_at_idle_instances_spreads(profile):
    """10 requests at once, no snapshot in between: the dispatcher counts what it placed (and
    ties rotate), so each of two idle instances gets half."""
    cluster = ScriptedCluster(script=[BLOCK])
    async with serving(cluster, profile=profile) as h:
        sent = [asyncio.create_task(h.client.post("/v1/completions", json=COMPLETION)) for _ in range(10)]
        while len(cluster.requests) < 10:
            await asyncio.sleep(0.01)
        placed = Counter(iid for iid, _ in cluster.requests)
        for t in sent:
            t.cancel()
        await asyncio.gather(*sent, return_exceptions=True)
    assert placed == {"i0": 5, "i1": 5}


def test_unknown_profile_fails_at_creation():
    framework = build_framework({"rr": ProfileConfig(picker="round_robin")})
    with pytest.raises(ConfigError, match=r"unknown scheduling profile 'default' \(configured: rr\)"):
        create_app(ScriptedCluster(), CharTokenizer(), MODEL, MAX_MODEL_LEN, framework, "default", Metrics())
