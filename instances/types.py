"""Typed boundary objects of an engine instance.

These are the only objects that cross the engine's edge: the gateway builds an `EngineRequest`,
the engine answers each `step()` with a `StepOutput` of per-request deltas, and the control plane
reads `InstanceStats`. All are plain dataclasses so they pickle cheaply through Ray.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field


class FinishReason(str, enum.Enum):
    """Why a request stopped producing tokens (the OpenAI `finish_reason` values plus ours)."""

    STOP = "stop"  # EOS, a stop token id or a stop string
    LENGTH = "length"  # max_tokens or the model's context reached
    ABORT = "abort"  # aborted by the client or the control plane
    ERROR = "error"  # the engine could not go on with this request alone (its `error` says why)


GREEDY_BELOW = 1e-5
"""A temperature below this samples greedily (vLLM's rule): dividing logits by it overflows."""

SEED_RANGE = (-(2**63), 2**64 - 1)
"""The seeds a request may give: anything a 64-bit generator takes (signed or unsigned)."""


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling settings, validated by `validate()`.

    `temperature` below `GREEDY_BELOW` means greedy. `top_k <= 0` disables top-k; `top_p == 1`
    disables top-p. `seed` makes sampling reproducible per request, independent of batch
    composition and of where the request runs (each token's draw is seeded by the seed and the
    token's position, so a request moved or resumed elsewhere draws what it would have drawn).
    `logprobs` is the number of top alternatives to report per token (None: no logprobs).
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def validate(self) -> None:
        """Raise ValueError with a user-facing message when a field is out of range."""
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if not 0 <= self.temperature < math.inf:
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.seed is not None and not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise ValueError(f"seed must fit in 64 bits ({SEED_RANGE[0]} to {SEED_RANGE[1]}), got {self.seed}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise ValueError(f"logprobs must be between 0 and 20, got {self.logprobs}")


class Priority(enum.IntEnum):
    """Request classes, served in this order (lower first); offline work is preempted first."""

    HIGH = 0
    NORMAL = 1
    LOW = 2
    OFFLINE = 3  # best-effort batch work (the API's `offline: true`)


@dataclass
class EngineRequest:
    """A tokenized request as admitted by an engine.

    `priority`: lower values are served first (vLLM's convention; `Priority` names the classes);
    among equal priorities the earlier TTFT deadline (`arrival_time + slo_ttft_s`, none: last), then
    the earlier `arrival_time`. `arrival_time` is in the engine clock's seconds and is only compared,
    never read as wall time. `slo_ttft_s` / `slo_tpot_s` are the request's latency targets.
    """

    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams
    arrival_time: float = 0.0
    priority: int = Priority.NORMAL
    eos_token_ids: tuple[int, ...] = ()
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    resumed: Resumed | None = None

    @property
    def first_index(self) -> int:
        """The output index of the first token the engine will produce for it."""
        return 0 if self.resumed is None else len(self.resumed.output_token_ids)


@dataclass
class Resumed:
    """What a request had produced before its instance was lost: its output tokens, their
    logprobs (when it asked for them; one per token) and how many characters of its text were
    already handed out (the rest, held back for stop strings, comes from the new instance)."""

    output_token_ids: list[int]
    output_logprobs: list[TokenLogprob] | None
    sent_chars: int


@dataclass
class TokenLogprob:
    """Log-probability of a sampled token and of the `top` alternatives (token id -> logprob)."""

    token_id: int
    logprob: float
    top: dict[int, float] = field(default_factory=dict)


@dataclass
class RequestDelta:
    """What one engine step produced for one request.

    `first_index` is the index (0-based, among output tokens) of `token_ids[0]`, so a consumer can drop
    duplicates and detect gaps. `finish_reason` is set on the request's last delta only; with
    `FinishReason.ERROR`, `error` says what went wrong.
    """

    request_id: str
    first_index: int
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    error: str | None = None


@dataclass
class StepOutput:
    """The result of one `Engine.step()`: deltas of requests that progressed, ids of freed requests."""

    deltas: list[RequestDelta]
    num_scheduled_tokens: int = 0
    num_preempted: int = 0


@dataclass(frozen=True)
class InstanceStats:
    """Snapshot of an instance, the only thing the control plane reads from it, and the scheduling
    framework's view of it (`controlplane.scheduling.types.InstanceView` is this type).

    The instance fills every field but the last two; a gateway adds what it dispatched since the
    snapshot (`pending_requests`, `pending_tokens`) and marks a dead instance unhealthy."""

    instance_id: str
    running: int
    waiting: int
    free_blocks: int
    total_blocks: int
    block_size: int
    tokens_in_flight: int  # prompt + generated tokens of running and waiting requests
    queued_prompt_tokens: int  # prompt tokens not yet computed (waiting and partially prefilled)
    last_step_time_s: float = 0.0
    steps: int = 0
    preemptions: int = 0
    healthy: bool = True
    draining: bool = False  # refuses new requests and incoming migrations
    restarting: bool = False  # a gateway marks a lost instance being restarted (not healthy meanwhile)
    head_demand_blocks: int = 0  # blocks the head-of-line queued request needs (0: nothing queued)
    high_priority: int = 0  # requests of priority HIGH running or queued here
    role: str = "unified"
    pending_requests: int = 0  # requests a gateway dispatched that the snapshot may not count yet
    pending_tokens: int = 0  # and their prompt tokens


@dataclass
class GenerationChunk:
    """What an instance streams to the gateway for one request after one engine step.

    Like `RequestDelta` plus the detokenized `text` of these tokens (stop strings already applied:
    text past a stop string is cut, and text that may begin a stop string is held back until it
    can be decided). `first_index` numbers output tokens from 0 so the consumer can drop duplicates
    and detect gaps. `error` comes with `FinishReason.ERROR`.
    """

    request_id: str
    first_index: int
    token_ids: list[int]
    text: str
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    error: str | None = None


@dataclass(frozen=True)
class MigrationCandidate:
    """A request a migration policy may move: its class, size and state on its instance.

    `num_tokens` are its prompt and output tokens, `num_blocks` the KV blocks it holds (0 when
    queued: a queued request moves without a KV copy), `order` its admission order on the instance
    (larger: admitted later)."""

    request_id: str
    priority: int
    num_tokens: int
    num_blocks: int
    running: bool
    order: int


@dataclass(frozen=True)
class RequestBlocks:
    """Where a request stands in an engine and which KV blocks hold it (the engine's boundary object
    for transfers, as vLLM's `KVCacheBlocks`: callers read it, never the engine's sequences).

    `state` is `waiting` (queued, or preempted back to the queue), `running` or `suspended` (held
    for a transfer). `block_ids` are its blocks in table order; the first `num_computed_tokens`
    tokens have K/V in them."""

    request_id: str
    state: str
    num_tokens: int
    num_computed_tokens: int
    block_ids: tuple[int, ...]

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def num_blocks(self) -> int:
        return len(self.block_ids)
