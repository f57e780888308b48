"""Token deltas to text chunks: incremental detokenization and stop strings.

Runs next to the engine (in the instance), so the gateway relays text without detokenizing.
Stop strings follow OpenAI's rule: the matched stop string and everything after it are not returned,
and the request finishes with reason "stop". While streaming, text that could still become the start
of a stop string is held back until it is decided.
"""

from __future__ import annotations

from dataclasses import dataclass

import tokenizers
from tokenizers.decoders import DecodeStream

from instances.types import FinishReason, GenerationChunk, RequestDelta, SamplingParams


@dataclass
class _TextState:
    stream: DecodeStream
    stop: tuple[str, ...]
    holdback: int
    text: str = ""
    sent: int = 0


class OutputProcessor:
    """Per-request detokenizer state. `process` is called with each delta in order."""

    def __init__(self, tokenizer: tokenizers.Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._states: dict[str, _TextState] = {}

    def add(self, request_id: str, sampling: SamplingParams) -> None:
        stop = tuple(s for s in sampling.stop if s)
        holdback = max((len(s) for s in stop), default=1) - 1
        self._states[request_id] = _TextState(DecodeStream(skip_special_tokens=True), stop, holdback)

    def sent_chars(self, request_id: str) -> int:
        """Characters of `request_id`'s text already handed out (a migration carries it along)."""
        return self._states[request_id].sent

    def adopt(self, request_id: str, sampling: SamplingParams, output_token_ids: list[int], sent: int) -> None:
        """Take over a request migrated or resumed here: rebuild its detokenizer by replaying the
        tokens it already produced (the state is deterministic in them), `sent` characters already
        out."""
        self.add(request_id, sampling)
        st = self._states[request_id]
        for tok in output_token_ids:
            piece = st.stream.step(self.tokenizer, tok)
            if piece:
                st.text += piece
        st.sent = sent

    def remove(self, request_id: str) -> None:
        self._states.pop(request_id, None)

    def process(self, delta: RequestDelta) -> tuple[GenerationChunk, bool]:
        """The chunk for `delta`, and True when a stop string ended the request here.

        After a stop-string hit the caller must abort the request in the engine; the chunk then
        carries finish reason STOP and only the tokens up to the one that completed the match.
        """
        st = self._states[delta.request_id]
        finish = delta.finish_reason
        token_ids = delta.token_ids
        stopped = False
        for i, tok in enumerate(delta.token_ids):
            piece = st.stream.step(self.tokenizer, tok)
            if not piece:
                continue
            search_from = max(0, len(st.text) - st.holdback)
            st.text += piece
            cut = self._find_stop(st, search_from)
            if cut is not None:
                st.text = st.text[:cut]
                token_ids = delta.token_ids[: i + 1]
                finish, stopped = FinishReason.STOP, True
                break
        end = len(st.text) if finish is not None else max(st.sent, len(st.text) - st.holdback)
        text = st.text[st.sent : end]
        st.sent = end
        if finish is not None:
            self.remove(delta.request_id)
        logprobs = delta.logprobs[: len(token_ids)] if delta.logprobs is not None else None
        chunk = GenerationChunk(
            request_id=delta.request_id,
            first_index=delta.first_index,
            token_ids=list(token_ids),
            text=text,
            logprobs=logprobs,
            finish_reason=finish,
            num_prompt_tokens=delta.num_prompt_tokens,
            num_cached_tokens=delta.num_cached_tokens,
            error=delta.error,
        )
        return chunk, stopped

    @staticmethod
    def _find_stop(st: _TextState, search_from: int) -> int | None:
        hits = [i for i in (st.text.find(s, search_from) for s in st.stop) if i >= 0]
        return min(hits) if hits else None
