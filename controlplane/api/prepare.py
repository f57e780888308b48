"""From a validated request body to what the engine runs: prompt token ids and sampling settings.

Checks what the schema cannot: the model name, token ids within the vocabulary, an empty prompt, and
that prompt + max_tokens fits the model's context. `max_tokens` defaults to the rest of the context.
A temperature below `GREEDY_BELOW` (1e-5) is greedy: the engine gets temperature 0, as in vLLM.
Both functions tokenize (and render a chat template), which takes long for a long prompt: the
gateway runs them in a worker thread.
`tokenize` and `detokenize` serve vLLM's `/tokenize` and `/detokenize` (no sampling, no context check:
the answer carries `max_model_len` for the client to compare).
Chat prompts are the tokenizer's chat template, tokenized without adding special tokens again.
Scheduling fields pass through as the engine's terms: the priority class (`offline` wins, see
`SamplingFields.engine_priority`) and the SLO in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
import re
from dataclasses import dataclass
from typing import Protocol

from controlplane.api.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    SamplingFields,
    TokenizeRequest,
    TokenizeResponse,
)
from flotilla.errors import InvalidRequest, ModelNotFound
from instances.types import GREEDY_BELOW, SamplingParams


_SURROGATE = re.compile("[\ud800-\udfff]")


class Tokenizer(Protocol):
    """What the gateway needs of a tokenizer."""

    eos_token_ids: Sequence[int]
    vocab_size: int

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def apply_chat_template(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str: ...

    def id_to_token(self, token_id: int) -> str: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...


@dataclass(frozen=True)
class Prepared:
    """A request ready to schedule: prompt ids, sampling settings, the tokenizer's EOS ids, the engine
    priority (an `instances.types.Priority` value) and the latency targets in seconds (None: none)."""

    prompt_token_ids: list[int]
    sampling: SamplingParams
    eos_token_ids: tuple[int, ...]
    priority: int
    slo_ttft_s: float | None
    slo_tpot_s: float | None


def _prepared(
    req: SamplingFields, ids: list[int], sampling: SamplingParams, tokenizer: Tokenizer
) -> Prepared:
    slo = req.slo
    return Prepared(
        prompt_token_ids=ids,
        sampling=sampling,
        eos_token_ids=tuple(tokenizer.eos_token_ids),
        priority=int(req.engine_priority),
        slo_ttft_s=_seconds(slo.ttft_ms) if slo is not None else None,
        slo_tpot_s=_seconds(slo.tpot_ms) if slo is not None else None,
    )


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0


def _check_model(requested: str | None, served: str) -> None:
    if requested is not None and requested != served:
        raise ModelNotFound(
            f"model {requested!r} does not exist; this server serves {served!r}", param="model"
        )


def _sampling(
    req: SamplingFields, prompt_len: int, max_tokens: int | None, logprobs: int | None, max_model_len: int
) -> SamplingParams:
    if prompt_len == 0:
        raise InvalidRequest("the prompt is empty", param="prompt")
    if prompt_len >= max_model_len:
        raise InvalidRequest(
            f"the prompt has {prompt_len} tokens but this model's context is {max_model_len} tokens, "
            "leaving no room for output; shorten the prompt",
            param="prompt",
        )
    if max_tokens is None:
        max_tokens = max_model_len - prompt_len
    elif prompt_len + max_tokens > max_model_len:
        raise InvalidRequest(
            f"this model's maximum context length is {max_model_len} tokens, but {prompt_len + max_tokens} "
            f"were requested ({prompt_len} in the prompt, {max_tokens} for output); "
            "reduce the prompt or max_tokens",
            param="max_tokens",
        )
    sampling = SamplingParams(
        max_tokens=max_tokens,
        temperature=0.0 if req.temperature < GREEDY_BELOW else req.temperature,
        top_k=max(0, req.top_k),
        top_p=req.top_p,
        seed=req.seed,
        stop=req.stop_strings,
        stop_token_ids=tuple(req.stop_token_ids),
        ignore_eos=req.ignore_eos,
        logprobs=logprobs,
    )
    try:
        sampling.validate()
    except ValueError as e:
        raise InvalidRequest(str(e)) from e
    return sampling


def _check_vocabulary(ids: list[int], tokenizer: Tokenizer, field: str) -> None:
    out_of_range = [t for t in ids if t >= tokenizer.vocab_size]
    if out_of_range:
        raise InvalidRequest(
            f"{field}: token id {out_of_range[0]} is out of range "
            f"(the vocabulary has {tokenizer.vocab_size} tokens)",
            param=field,
        )


def prepare_completion(
    req: CompletionRequest, tokenizer: Tokenizer, model_name: str, max_model_len: int
) -> Prepared:
    """Tokenize a completion prompt (token-id prompts are used as given, after a range check)."""
    _check_model(req.model, model_name)
    if isinstance(req.prompt, list):
        ids = list(req.prompt)
        _check_vocabulary(ids, tokenizer, "prompt")
    else:
        ids = tokenizer.encode(req.prompt, add_special_tokens=True)
    sampling = _sampling(req, len(ids), req.max_tokens, req.logprobs, max_model_len)
    return _prepared(req, ids, sampling, tokenizer)


def prepare_chat(
    req: ChatCompletionRequest, tokenizer: Tokenizer, model_name: str, max_model_len: int
) -> Prepared:
    """Render the chat template, tokenize it and set sampling."""
    _check_model(req.model, model_name)
    ids = _chat_ids(req.messages, tokenizer, add_generation_prompt=True, add_special_tokens=False)
    sampling = _sampling(req, len(ids), req.output_limit, req.num_logprobs, max_model_len)
    return _prepared(req, ids, sampling, tokenizer)


def _chat_ids(
    messages: list[ChatMessage], tokenizer: Tokenizer, add_generation_prompt: bool, add_special_tokens: bool
) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content or ""} for m in messages], add_generation_prompt=add_generation_prompt
    )
    return tokenizer.encode(text, add_special_tokens=add_special_tokens)


def tokenize(req: TokenizeRequest, tokenizer: Tokenizer, model_name: str, max_model_len: int) -> TokenizeResponse:
    """`/tokenize`: the ids of `req.prompt` (special tokens added unless `add_special_tokens` is
    false), or of `req.messages` rendered by the chat template (no special tokens added unless asked)."""
    _check_model(req.model, model_name)
    if req.messages is not None:
        special = req.add_special_tokens if req.add_special_tokens is not None else False
        ids = _chat_ids(req.messages, tokenizer, req.add_generation_prompt, special)
    else:
        assert req.prompt is not None  # the schema wants one of the two
        special = req.add_special_tokens if req.add_special_tokens is not None else True
        ids = tokenizer.encode(req.prompt, add_special_tokens=special)
    strs = [tokenizer.id_to_token(t) for t in ids] if req.return_token_strs else None
    return TokenizeResponse(count=len(ids), max_model_len=max_model_len, tokens=ids, token_strs=strs)


def detokenize(req: DetokenizeRequest, tokenizer: Tokenizer, model_name: str) -> DetokenizeResponse:
    """`/detokenize`: the text of `req.tokens`, special tokens kept. InvalidRequest for an id outside
    the vocabulary, or ids whose text is not valid Unicode (a lone UTF-16 surrogate)."""
    _check_model(req.model, model_name)
    _check_vocabulary(req.tokens, tokenizer, "tokens")
    text = tokenizer.decode(req.tokens, skip_special_tokens=False)
    if _SURROGATE.search(text) is not None:
        raise InvalidRequest("tokens: their text is not valid Unicode (a lone UTF-16 surrogate)", param="tokens")
    return DetokenizeResponse(prompt=text)
