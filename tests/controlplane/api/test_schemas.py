import pytest
from pydantic import ValidationError

from controlplane.api.schemas import ChatCompletionRequest, CompletionRequest


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
    assert (req.stream, req.include_usage, req.logprobs, req.priority) == (False, False, None, 0)


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
