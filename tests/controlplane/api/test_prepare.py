import pytest

from controlplane.api.prepare import prepare_chat, prepare_completion
from controlplane.api.schemas import ChatCompletionRequest, CompletionRequest
from flotilla.errors import InvalidRequest, ModelNotFound
from instances.types import Priority, SamplingParams
from tests.controlplane.api.fakes import BOS, EOS, CharTokenizer


class NoBosTokenizer(CharTokenizer):
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return super().encode(text, add_special_tokens=False)


def _completion(**fields) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "ab", **fields})


def test_completion_tokenizes_with_special_tokens():
    prepared = prepare_completion(_completion(max_tokens=3), CharTokenizer(), "m", 10)
    assert prepared.prompt_token_ids == [BOS, 97, 98]
    assert prepared.sampling == SamplingParams(max_tokens=3)
    assert prepared.eos_token_ids == (EOS,)
    assert (prepared.priority, prepared.slo_ttft_s, prepared.slo_tpot_s) == (Priority.NORMAL, None, None)


def test_completion_carries_priority_and_slo_in_seconds():
    req = _completion(priority="high", slo={"ttft_ms": 1500, "tpot_ms": 25})
    prepared = prepare_completion(req, CharTokenizer(), "m", 10)
    assert type(prepared.priority) is int
    assert (prepared.priority, prepared.slo_ttft_s, prepared.slo_tpot_s) == (Priority.HIGH, 1.5, 0.025)


def test_chat_carries_offline_class_and_partial_slo():
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "q"}],
            "offline": True,
            "slo": {"tpot_ms": 200},
        }
    )
    prepared = prepare_chat(req, CharTokenizer(), "m", 100)
    assert (prepared.priority, prepared.slo_ttft_s, prepared.slo_tpot_s) == (Priority.OFFLINE, None, 0.2)


def test_token_id_prompt_is_used_as_given():
    prepared = prepare_completion(_completion(prompt=[7, 8]), CharTokenizer(), "m", 10)
    assert prepared.prompt_token_ids == [7, 8]
    assert prepared.sampling.max_tokens == 8


def test_prompt_may_fill_all_but_one_position():
    prepared = prepare_completion(_completion(prompt=[1] * 9), CharTokenizer(), "m", 10)
    assert prepared.sampling.max_tokens == 1


def test_chat_uses_template_without_adding_special_tokens():
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "q"}], "logprobs": True}
    )
    prepared = prepare_chat(req, CharTokenizer(), "m", 100)
    assert prepared.prompt_token_ids == [ord(c) for c in "<user>q<assistant>"]
    assert prepared.sampling.max_tokens == 100 - 18
    assert prepared.sampling.logprobs == 0


def test_unknown_model():
    with pytest.raises(ModelNotFound) as info:
        prepare_completion(_completion(model="x"), CharTokenizer(), "m", 10)
    assert (info.value.message, info.value.param) == (
        "model 'x' does not exist; this server serves 'm'",
        "model",
    )


def test_empty_prompt():
    with pytest.raises(InvalidRequest) as info:
        prepare_completion(_completion(prompt=""), NoBosTokenizer(), "m", 10)
    assert (info.value.message, info.value.param) == ("the prompt is empty", "prompt")


def test_context_overflow_names_the_numbers():
    with pytest.raises(InvalidRequest) as info:
        prepare_completion(_completion(max_tokens=8), CharTokenizer(), "m", 10)
    assert info.value.message == (
        "this model's maximum context length is 10 tokens, but 11 were requested (3 in the prompt, "
        "8 for output); reduce the prompt or max_tokens"
    )
    assert info.value.param == "max_tokens"


def test_token_ids_must_be_in_the_vocabulary():
    with pytest.raises(InvalidRequest) as info:
        prepare_completion(_completion(prompt=[5, 0x110000]), CharTokenizer(), "m", 10)
    assert (
        info.value.message == "prompt: token id 1114112 is out of range (the vocabulary has 1114112 tokens)"
    )
    assert info.value.param == "prompt"
