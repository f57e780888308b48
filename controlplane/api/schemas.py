"""OpenAI-compatible request and response bodies of `/v1/completions` and `/v1/chat/completions`.

Request models ignore fields they do not know (clients send many optional OpenAI fields), check
ranges field by field (so a 400 names the field), and normalise shapes: a completion `prompt` becomes
either text or a list of token ids, and chat `content` parts become one string. Only `n == 1` is
served. vLLM extensions accepted: `top_k` (-1 or 0 disables it), `ignore_eos`, `stop_token_ids`.

Types are strict: an integer field takes a JSON integer only (not `true`, `1.5` or `"1"`), a boolean
field `true` or `false` only, a number field any finite JSON number (not `true` or `"1"`). Ranges,
as vLLM validates them at its API edge unless noted:
- `temperature`: 0 to `MAX_TEMPERATURE` (100; OpenAI documents 0 to 2); below 1e-5 it is greedy
  (`prepare`).
- `top_p`: `MIN_TOP_P` (1e-8) to 1. vLLM takes any value above 0; one below 1e-8 keeps only the most
  likely token for any vocabulary under 10^8 tokens, so it is greedy sampling in disguise: ask for
  `temperature: 0`.
- `seed`: a signed 64-bit integer (`API_SEED_RANGE`).

Flotilla's scheduling fields (both endpoints):
- `priority`: `"high"`, `"normal"` (default) or `"low"`, case-insensitive; the engine serves higher
  classes first (`instances.types.Priority`).
- `slo`: `{"ttft_ms": number > 0, "tpot_ms": number > 0}`, both optional, no other keys: latency
  targets; an instance orders queued requests of one class by TTFT deadline (arrival + ttft).
- `offline`: `true` marks best-effort batch work that fills spare capacity and is preempted first. It
  runs in the engine class `Priority.OFFLINE` whatever `priority` says; with `priority: "high"` it is
  a 400 (the two conflict).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from instances.types import Priority

PriorityName = Literal["high", "normal", "low"]
ENGINE_PRIORITIES: dict[str, Priority] = {
    "high": Priority.HIGH,
    "normal": Priority.NORMAL,
    "low": Priority.LOW,
}


MAX_TEMPERATURE = 100.0
MIN_TOP_P = 1e-8
API_SEED_RANGE = (-(2**63), 2**63 - 1)
"""The seeds the API takes: a signed 64-bit integer, as vLLM's API (the engine's
`instances.types.SEED_RANGE` takes unsigned 64-bit seeds as well)."""

_PRIORITY_SCHEMA = {
    "type": "string",
    "pattern": "^([Hh][Ii][Gg][Hh]|[Nn][Oo][Rr][Mm][Aa][Ll]|[Ll][Oo][Ww])$",
    "description": "high, normal or low, in any case",
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Request):
    include_usage: StrictBool = False


class SLO(_Request):
    """A request's latency targets in milliseconds (a JSON number > 0 each; absent or null: none).
    Keys other than these two are rejected, naming the key."""

    ttft_ms: float | None = Field(default=None, gt=0, strict=True, allow_inf_nan=False)
    tpot_ms: float | None = Field(default=None, gt=0, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [str(k) for k in data if k not in cls.model_fields]
            if unknown:
                raise PydanticCustomError(
                    "slo_key", 'unknown key "{key}"; slo takes ttft_ms and tpot_ms', {"key": unknown[0]}
                )
        return data


class SamplingFields(_Request):
    """Fields shared by both endpoints, sampling and scheduling (`priority`, `slo`, `offline`)."""

    model: str
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=MAX_TEMPERATURE, strict=True, allow_inf_nan=False)
    top_p: float = Field(default=1.0, ge=MIN_TOP_P, le=1.0, strict=True, allow_inf_nan=False)
    top_k: StrictInt = Field(default=0, ge=-1)
    seed: StrictInt | None = Field(default=None, ge=API_SEED_RANGE[0], le=API_SEED_RANGE[1])
    stop: str | list[str] | None = None
    stop_token_ids: list[StrictInt] = Field(default_factory=list)
    ignore_eos: StrictBool = False
    n: StrictInt = Field(default=1, json_schema_extra={"const": 1})
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    priority: Annotated[PriorityName, WithJsonSchema(_PRIORITY_SCHEMA)] = "normal"
    slo: SLO | None = None
    offline: StrictBool = False  # declared after `priority`: its validator reads the validated priority

    @field_validator("n")
    @classmethod
    def _only_one_choice(cls, n: int) -> int:
        if n != 1:
            raise PydanticCustomError("unsupported", "only n=1 is supported, got {n}", {"n": n})
        return n

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_name(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in ENGINE_PRIORITIES:
            return value.lower()
        raise PydanticCustomError(
            "priority",
            'must be one of "high", "normal", "low", got {value}',
            {"value": json.dumps(value, default=repr)[:40]},
        )

    @field_validator("offline")
    @classmethod
    def _offline_is_not_high(cls, offline: bool, info: ValidationInfo) -> bool:
        if offline and info.data.get("priority") == "high":
            raise PydanticCustomError(
                "offline",
                'an offline request runs in the lowest class; it conflicts with priority "high"',
            )
        return offline

    @field_validator("stop_token_ids")
    @classmethod
    def _token_ids_non_negative(cls, ids: list[int]) -> list[int]:
        if any(i < 0 for i in ids):
            raise PydanticCustomError("token_id", "token ids must be >= 0")
        return ids

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(
        cls, value: StreamOptions | None, info: ValidationInfo
    ) -> StreamOptions | None:
        if value is not None and not info.data.get("stream", False):
            raise PydanticCustomError("stream_options", "only allowed when stream is true")
        return value

    @property
    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def engine_priority(self) -> Priority:
        """The engine class: `Priority.OFFLINE` when `offline`, else the one `priority` names."""
        return Priority.OFFLINE if self.offline else ENGINE_PRIORITIES[self.priority]


class CompletionRequest(SamplingFields):
    """`/v1/completions`. `prompt` is text, a list of one text, or a list of token ids (used as is).
    `logprobs` is the number of top alternatives to report per token (0..20)."""

    prompt: str | list[int]
    logprobs: StrictInt | None = Field(default=None, ge=0, le=20)

    @field_validator("prompt", mode="before", json_schema_input_type=str | list[str] | list[int])
    @classmethod
    def _one_prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            if len(value) != 1:
                raise PydanticCustomError("unsupported", "only one prompt per request is supported")
            return value[0]
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            if any(v < 0 for v in value):
                raise PydanticCustomError("token_id", "token ids must be >= 0")
            return value
        if isinstance(value, str):
            return value
        raise PydanticCustomError(
            "prompt", "must be a string, a list of one string, or a non-empty list of token ids"
        )


class TextPart(_Request):
    """A text content part: `{"type": "text", "text": ...}`."""

    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    """One message; list-of-parts `content` (text parts only) is joined into one string."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = None

    @field_validator("content", mode="before", json_schema_input_type=str | list[TextPart] | None)
    @classmethod
    def _join_text_parts(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        texts: list[str] = []
        for part in value:
            if not (
                isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            ):
                raise PydanticCustomError(
                    "content_part", 'only text content parts (type "text") are supported'
                )
            texts.append(part["text"])
        return "\n".join(texts)


class ChatCompletionRequest(SamplingFields):
    """`/v1/chat/completions`. `max_completion_tokens` wins over `max_tokens` when both are given.
    `logprobs` switches log-probabilities on; `top_logprobs` (0..20) asks for alternatives."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=20)

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_need_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs", False):
            raise PydanticCustomError("top_logprobs", "only allowed when logprobs is true")
        return value

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def num_logprobs(self) -> int | None:
        if not self.logprobs:
            return None
        return self.top_logprobs if self.top_logprobs is not None else 0


# ---- responses ---------------------------------------------------------------------------------


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class CompletionLogprobs(BaseModel):
    """Per-token log-probabilities of a completion, in OpenAI's legacy shape."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class CompletionResponse(BaseModel):
    """Both the full response and a stream chunk (`usage` null until the final usage chunk)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob] = Field(default_factory=list)


class ChatResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatResponseMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "flotilla"
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class ErrorResponse(BaseModel):
    error: ErrorInfo


# ---- vLLM's tokenizer endpoints ------------------------------------------------------------------


class TokenizeRequest(_Request):
    """`POST /tokenize`, as vLLM's: either `prompt` (text; `add_special_tokens` defaults to true) or
    `messages` (a chat, rendered by the chat template, with the assistant's turn opened when
    `add_generation_prompt`; `add_special_tokens` defaults to false, as the template has them),
    never both. `model`, when given, must be the served model. `return_token_strs`: also each
    token's text."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["prompt"], "not": {"required": ["messages"]}},
        {"required": ["messages"], "not": {"required": ["prompt"]}},
    ]})

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    add_generation_prompt: StrictBool = True
    add_special_tokens: StrictBool | None = None
    return_token_strs: StrictBool = False

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise PydanticCustomError(
                "tokenize_input", "give either prompt (text) or messages (a chat), not both or neither"
            )
        return self


class DetokenizeRequest(_Request):
    """`POST /detokenize`, as vLLM's: the text of `tokens` (ids within the vocabulary, special tokens
    kept). `model`, when given, must be the served model."""

    model: str | None = None
    tokens: list[Annotated[StrictInt, Field(ge=0)]]


class TokenizeResponse(BaseModel):
    """The prompt's token ids, how many, and the model's context length (prompt + output)."""

    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeResponse(BaseModel):
    prompt: str


class VersionResponse(BaseModel):
    version: str
