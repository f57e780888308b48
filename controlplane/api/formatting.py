"""OpenAI response bodies from a run's chunks: whole responses and stream chunks, per endpoint.

`CompletionFormat` and `ChatFormat` share one shape (`opening`, `chunk`, `usage_chunk`, `response`),
so the streaming and non-streaming relays (`controlplane.api.streaming`) treat both endpoints alike.
Token strings in logprobs are the tokenizer's vocabulary entries (`id_to_token`).
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from controlplane.api.prepare import Tokenizer
from controlplane.api.relay import Run
from controlplane.api.schemas import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatDelta,
    ChatLogprobs,
    ChatResponseMessage,
    ChatTokenLogprob,
    CompletionChoice,
    CompletionLogprobs,
    CompletionResponse,
    PromptTokensDetails,
    TopLogprob,
    Usage,
)
from instances.types import GenerationChunk, TokenLogprob


def usage_of(run: Run) -> Usage:
    return Usage(
        prompt_tokens=run.prompt_tokens,
        completion_tokens=run.output_tokens,
        total_tokens=run.prompt_tokens + run.output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=run.cached_tokens),
    )


class ResponseFormat(Protocol):
    """How one endpoint renders its bodies."""

    def opening(self) -> list[BaseModel]: ...

    def chunk(self, chunk: GenerationChunk) -> BaseModel | None: ...

    def usage_chunk(self, usage: Usage) -> BaseModel: ...

    def response(
        self, text: str, logprobs: list[TokenLogprob], finish_reason: str | None, usage: Usage
    ) -> BaseModel: ...


class CompletionFormat:
    """`/v1/completions` bodies (`text_completion` objects)."""

    def __init__(
        self, request_id: str, model: str, created: int, tokenizer: Tokenizer, logprobs: bool
    ) -> None:
        self.request_id, self.model, self.created = request_id, model, created
        self.tokenizer, self.logprobs = tokenizer, logprobs

    def _top(self, top: dict[int, float]) -> dict[str, float]:
        """Alternatives keyed by token text; tokens with the same text (e.g. partial UTF-8 bytes,
        all U+FFFD) keep the highest logprob among them."""
        out: dict[str, float] = {}
        for token_id, logprob in top.items():
            text = self.tokenizer.id_to_token(token_id)
            out[text] = max(logprob, out.get(text, logprob))
        return out

    def _logprobs(self, lps: list[TokenLogprob]) -> CompletionLogprobs | None:
        if not self.logprobs:
            return None
        return CompletionLogprobs(
            tokens=[self.tokenizer.id_to_token(lp.token_id) for lp in lps],
            token_logprobs=[lp.logprob for lp in lps],
            top_logprobs=[self._top(lp.top) for lp in lps],
        )

    def _body(self, choices: list[CompletionChoice], usage: Usage | None = None) -> CompletionResponse:
        return CompletionResponse(
            id=self.request_id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def opening(self) -> list[BaseModel]:
        return []

    def chunk(self, chunk: GenerationChunk) -> BaseModel | None:
        if not (chunk.text or chunk.token_ids or chunk.finish_reason):
            return None
        reason = chunk.finish_reason.value if chunk.finish_reason else None
        choice = CompletionChoice(
            text=chunk.text, logprobs=self._logprobs(chunk.logprobs or []), finish_reason=reason
        )
        return self._body([choice])

    def usage_chunk(self, usage: Usage) -> BaseModel:
        return self._body([], usage)

    def response(
        self, text: str, logprobs: list[TokenLogprob], finish_reason: str | None, usage: Usage
    ) -> CompletionResponse:
        choice = CompletionChoice(text=text, logprobs=self._logprobs(logprobs), finish_reason=finish_reason)
        return self._body([choice], usage)


class ChatFormat:
    """`/v1/chat/completions` bodies (`chat.completion` and `chat.completion.chunk` objects)."""

    def __init__(
        self, request_id: str, model: str, created: int, tokenizer: Tokenizer, logprobs: bool
    ) -> None:
        self.request_id, self.model, self.created = request_id, model, created
        self.tokenizer, self.logprobs = tokenizer, logprobs

    def _entry(self, token_id: int, logprob: float) -> TopLogprob:
        token = self.tokenizer.id_to_token(token_id)
        return TopLogprob(token=token, logprob=logprob, bytes=list(token.encode("utf-8")))

    def _logprobs(self, lps: list[TokenLogprob]) -> ChatLogprobs | None:
        if not self.logprobs:
            return None
        content = []
        for lp in lps:
            top = sorted(lp.top.items(), key=lambda kv: -kv[1])
            entry = self._entry(lp.token_id, lp.logprob)
            content.append(
                ChatTokenLogprob(**entry.model_dump(), top_logprobs=[self._entry(t, v) for t, v in top])
            )
        return ChatLogprobs(content=content)

    def _chunk_body(self, choices: list[ChatChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.request_id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def opening(self) -> list[BaseModel]:
        return [self._chunk_body([ChatChunkChoice(delta=ChatDelta(role="assistant", content=""))])]

    def chunk(self, chunk: GenerationChunk) -> BaseModel | None:
        if not (chunk.text or chunk.token_ids or chunk.finish_reason):
            return None
        choice = ChatChunkChoice(
            delta=ChatDelta(content=chunk.text or None),
            logprobs=self._logprobs(chunk.logprobs or []),
            finish_reason=chunk.finish_reason.value if chunk.finish_reason else None,
        )
        return self._chunk_body([choice])

    def usage_chunk(self, usage: Usage) -> BaseModel:
        return self._chunk_body([], usage)

    def response(
        self, text: str, logprobs: list[TokenLogprob], finish_reason: str | None, usage: Usage
    ) -> ChatCompletionResponse:
        choice = ChatChoice(
            message=ChatResponseMessage(content=text),
            logprobs=self._logprobs(logprobs),
            finish_reason=finish_reason,
        )
        return ChatCompletionResponse(
            id=self.request_id, created=self.created, model=self.model, choices=[choice], usage=usage
        )
