"""Stand-ins for the engine side, for testing the HTTP layer in isolation.

`ScriptedCluster` implements the `Cluster` protocol by replaying fixed chunks; `CharTokenizer` has one
token per character. The real runtime and tokenizer are exercised in tests/controlplane/test_api_local.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from controlplane.scheduling.types import InstanceView
from instances.types import EngineRequest, FinishReason, GenerationChunk, TokenLogprob

BOS = 1
EOS = 2


class CharTokenizer:
    """One token per character (its code point), BOS prepended when special tokens are added."""

    eos_token_ids = (EOS,)
    vocab_size = 0x110000

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([BOS] if add_special_tokens else []) + [ord(c) for c in text]

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    def id_to_token(self, token_id: int) -> str:
        return chr(token_id)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i in (BOS, EOS)))


@dataclass
class Step:
    """One scripted chunk (first_index, token ids and text); `finish` ends the stream."""

    first_index: int
    token_ids: list[int]
    text: str
    finish: FinishReason | None = None
    cached: int = 0
    logprobs: list[TokenLogprob] | None = None
    error: str | None = None


BLOCK = "block"  # a script entry that makes the stream wait until it is closed
HELLO = [Step(0, [104, 105], "hi"), Step(2, [33], "!", FinishReason.STOP, cached=16)]


def view(instance_id: str, healthy: bool = True, draining: bool = False) -> InstanceView:
    return InstanceView(instance_id=instance_id, running=0, waiting=0, free_blocks=100, total_blocks=100,
                        block_size=16, tokens_in_flight=0, queued_prompt_tokens=0, healthy=healthy,
                        draining=draining)


@dataclass
class ScriptedCluster:
    """A Cluster whose every request replays `script`: Steps, BLOCK, or an exception to raise; it
    drains as the runtimes do, so a `Controller` can drive it. `then`: scripts for the following
    `generate` calls, one each, in order (a resumed request's), before `script` again."""

    script: list[Step | str | Exception] = field(default_factory=lambda: list(HELLO))
    then: list[list[Step | str | Exception]] = field(default_factory=list)
    instances: list[InstanceView] = field(default_factory=lambda: [view("i0"), view("i1")])
    requests: list[tuple[str, EngineRequest]] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    blocked: asyncio.Event = field(default_factory=asyncio.Event)

    def views(self) -> list[InstanceView]:
        return list(self.instances)

    async def generate(self, instance_id: str, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        script = self.then.pop(0) if self.requests and self.then else self.script
        self.requests.append((instance_id, request))
        try:
            for entry in script:
                if isinstance(entry, Exception):
                    raise entry
                if entry == BLOCK:
                    self.blocked.set()
                    await asyncio.Event().wait()
                    continue
                assert isinstance(entry, Step)
                await asyncio.sleep(0)
                yield GenerationChunk(
                    request.request_id,
                    entry.first_index,
                    list(entry.token_ids),
                    entry.text,
                    logprobs=entry.logprobs,
                    finish_reason=entry.finish,
                    num_prompt_tokens=len(request.prompt_token_ids),
                    num_cached_tokens=entry.cached,
                    error=entry.error,
                )
        finally:
            self.closed.append(request.request_id)

    async def set_draining(self, instance_id: str, draining: bool) -> None:
        """As the runtimes: the instance's view says so at once."""
        self.instances = [dataclasses.replace(v, draining=draining) if v.instance_id == instance_id else v
                          for v in self.instances]

    async def abort(self, instance_id: str, request_id: str) -> None:
        raise AssertionError("the gateway aborts by closing the stream, not by calling abort()")

    async def close(self) -> None:
        return None
