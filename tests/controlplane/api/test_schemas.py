import pytest
from pydantic import ValidationError

from controlplane.api.schemas import ChatCompletionRequest, CompletionRequest
from instances.types import Priority


def _completion(**fields) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "p", **fields})


def _chat(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def _first_error(model, data) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    err = info.value.errors()[0]
    return ".".join(str(p) for p in err["loc"]), err["msg"]


def test_completion_defaults():
    req = _completion()
    assert (req.max_tokens, req.temperature, req.top_p, req.top_k, req.seed) == (None, 1.0, 1.0, 0, None)
    assert (req.stop_strings, req.stop_token_ids, req.ignore_eos, req.n) == ((), [], False, 1)
    assert (req.stream, req.include_usage, req.logprobs) == (False, False, None)
    assert (req.priority, req.slo, req.offline, req.engine_priority) == (
        "normal",
        None,
        False,
        Priority.NORMAL,
    )


@pytest.mark.parametrize(
    ("fields", "name", "engine"),
    [
        ({"priority": "high"}, "high", Priority.HIGH),
        ({"priority": "NORMAL"}, "normal", Priority.NORMAL),
        ({"priority": "Low"}, "low", Priority.LOW),
        ({"offline": True}, "normal", Priority.OFFLINE),
        ({"offline": True, "priority": "low"}, "low", Priority.OFFLINE),
        ({"offline": False, "priority": "high"}, "high", Priority.HIGH),
    ],
)
def test_priority_classes(fields, name, engine):
    for req in (_completion(**fields), _chat(**fields)):
        assert (req.priority, req.engine_priority) == (name, engine)


@pytest.mark.parametrize(
    ("priority", "shown"),
    [(0, "0"), ("urgent", '"urgent"'), (None, "null"), (["high"], '["high"]'), ("", '""')],
)
def test_bad_priority(priority, shown):
    assert _first_error(CompletionRequest, {"model": "m", "prompt": "p", "priority": priority}) == (
        "priority",
        f'must be one of "high", "normal", "low", got {shown}',
    )


def test_offline_conflicts_with_high_priority():
    for model, data in [
        (CompletionRequest, {"model": "m", "prompt": "p"}),
        (ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    ]:
        assert _first_error(model, {**data, "offline": True, "priority": "HIGH"}) == (
            "offline",
            'an offline request runs in the lowest class; it conflicts with priority "high"',
        )


def test_slo():
    assert _completion(slo={}).slo is not None
    slo = _chat(slo={"ttft_ms": 250, "tpot_ms": 12.5}).slo
    assert slo is not None and (slo.ttft_ms, slo.tpot_ms) == (250.0, 12.5)
    slo = _completion(slo={"tpot_ms": 40, "ttft_ms": None}).slo
    assert slo is not None and (slo.ttft_ms, slo.tpot_ms) == (None, 40.0)


@pytest.mark.parametrize(
    ("slo", "loc", "message"),
    [
        ({"ttft_ms": 0}, "slo.ttft_ms", "Input should be greater than 0"),
        ({"tpot_ms": -5}, "slo.tpot_ms", "Input should be greater than 0"),
        ({"ttft_ms": "100"}, "slo.ttft_ms", "Input should be a valid number"),
        ({"ttft_ms": True}, "slo.ttft_ms", "Input should be a valid number"),
        ({"ttft_ms": float("inf")}, "slo.ttft_ms", "Input should be a finite number"),
        ({"ttft_ms": 100, "ttft": 100}, "slo", 'unknown key "ttft"; slo takes ttft_ms and tpot_ms'),
        (100, "slo", "Input should be a valid dictionary or instance of SLO"),
    ],
)
def test_bad_slo(slo, loc, message):
    assert _first_error(CompletionRequest, {"model": "m", "prompt": "p", "slo": slo}) == (loc, message)


@pytest.mark.parametrize(
    ("prompt", "normalised"),
    [("text", "text"), (["one"], "one"), ([1, 2, 3], [1, 2, 3]), ("", "")],
)
def test_prompt_shapes(prompt, normalised):
    assert _completion(prompt=prompt).prompt == normalised


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (["a", "b"], "only one prompt per request is supported"),
        ([1, -1], "token ids must be >= 0"),
        ([], "must be a string, a list of one string, or a non-empty list of token ids"),
        ([1, "a"], "must be a string, a list of one string, or a non-empty list of token ids"),
        ([[1, 2]], "must be a string, a list of one string, or a non-empty list of token ids"),
        ([True], "must be a string, a list of one string, or a non-empty list of token ids"),
        (None, "must be a string, a list of one string, or a non-empty list of token ids"),
    ],
)
def test_bad_prompts(prompt, message):
    assert _first_error(CompletionRequest, {"model": "m", "prompt": prompt}) == ("prompt", message)


def test_stop_shapes():
    assert _completion(stop="x").stop_strings == ("x",)
    assert _completion(stop=["x", "y"]).stop_strings == ("x", "y")


def test_unknown_fields_are_ignored():
    req = _completion(user="u", best_of=1, presence_penalty=0.1)
    assert not hasattr(req, "user")


def test_stream_options():
    assert _completion(stream=True, stream_options={"include_usage": True}).include_usage is True
    assert _completion(stream=True).include_usage is False
    assert _first_error(CompletionRequest, {"model": "m", "prompt": "p", "stream_options": {}}) == (
        "stream_options",
        "only allowed when stream is true",
    )


def test_negative_stop_token_id():
    assert _first_error(CompletionRequest, {"model": "m", "prompt": "p", "stop_token_ids": [-1]}) == (
        "stop_token_ids",
        "token ids must be >= 0",
    )


def test_logprobs_range():
    assert _completion(logprobs=20).logprobs == 20
    assert _first_error(CompletionRequest, {"model": "m", "prompt": "p", "logprobs": 21}) == (
        "logprobs",
        "Input should be less than or equal to 20",
    )


def test_chat_content_shapes():
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": None},
            ],
        }
    )
    assert [(m.role, m.content) for m in req.messages] == [
        ("system", "s"),
        ("user", "a\nb"),
        ("assistant", None),
    ]


def test_chat_output_limit():
    assert _chat().output_limit is None
    assert _chat(max_tokens=3).output_limit == 3
    assert _chat(max_tokens=3, max_completion_tokens=7).output_limit == 7


def test_chat_logprobs():
    assert _chat().num_logprobs is None
    assert _chat(logprobs=True).num_logprobs == 0
    assert _chat(logprobs=True, top_logprobs=5).num_logprobs == 5
