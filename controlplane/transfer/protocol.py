"""The transfer core's vocabulary: actions a driver carries out, events it reports, the outcome.

Actions name a verb and the side that runs it. *Forward* actions are answered by events (the last
one answers the action: `Describe` -> `Described`, `Reserve` -> `Reserved`, `CopyStage` ->
`StageCopied`, `AwaitStep` -> `StepDone`, `StopAndCopy` -> `Suspended` then `Committed`,
`Release` -> `Released`), or by a failure event (`Refused`, `PeerLost`, `TimedOut`). *Undo*
actions (`Abandon`, `Resume`, `AbortDestination`) are carried out best effort and answered by
nothing. `Abort` comes from the transfer's owner, at any time. Every event carries `now`, the
driver's clock (virtual time in the simulator): the core never reads a clock itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.scheduling.migration import MigrationOrder

SOURCE_GONE = frozenset({"finished", "preempted"})
"""Refusal reasons that mean the request is no longer running on the source (it ended, or was
preempted by recompute): the transfer ends with that word as its result. Every other reason is the
destination's (`draining`, `no_room`, `full`, `duplicate`, `too_long`, `wrong_model`, `expired`)."""


# ---- actions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Describe:
    """Source: is the request running (it holds KV) or queued, and how many tokens it has."""


@dataclass(frozen=True)
class Reserve:
    """Destination: hold blocks for `num_tokens` tokens of the incoming request."""

    num_tokens: int


@dataclass(frozen=True)
class CopyStage:
    """Source -> destination, while the request keeps running on the source: its KV pages from
    block `first` to the last one it holds now (the destination's reservation grows to fit)."""

    first: int


@dataclass(frozen=True)
class AwaitStep:
    """Wait until the source is between two steps (verbs of a real instance always are)."""


@dataclass(frozen=True)
class StopAndCopy:
    """Source: take the request out of its batch at a step boundary and hand its state, with its
    pages from block `first` on, to the destination, which commits it (it runs there next step).
    `queued`: it was queued at the start, so it holds no reservation and no copied pages."""

    first: int
    queued: bool = False


@dataclass(frozen=True)
class Release:
    """Source: the request runs on the destination now; free it here."""


@dataclass(frozen=True)
class Abandon:
    """Destination (undo): free the reservation, or drop the request if a commit went through late."""


@dataclass(frozen=True)
class Resume:
    """Source (undo): the suspended request runs here again (nothing if it was not suspended)."""


@dataclass(frozen=True)
class AbortDestination:
    """Destination (undo): the request was aborted on the source during the move; abort it here."""


Action = (Describe | Reserve | CopyStage | AwaitStep | StopAndCopy | Release | Abandon | Resume
          | AbortDestination)
UNDO = (Abandon, Resume, AbortDestination)


# ---- events -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Described:
    now: float
    running: bool
    num_tokens: int


@dataclass(frozen=True)
class Reserved:
    now: float


@dataclass(frozen=True)
class StageCopied:
    """The destination holds final copies of the first `copied` blocks; the source holds
    `source_blocks` blocks now. `blocks` and `nbytes`: what this stage moved."""

    now: float
    copied: int
    source_blocks: int
    blocks: int = 0
    nbytes: int = 0


@dataclass(frozen=True)
class StepDone:
    now: float


@dataclass(frozen=True)
class Suspended:
    """The request left the source's batch (as far as the driver knows: when the suspend was sent)."""

    now: float


@dataclass(frozen=True)
class Committed:
    """The request runs on the destination; `blocks` and `nbytes`: the stop-and-copy's pages."""

    now: float
    blocks: int = 0
    nbytes: int = 0


@dataclass(frozen=True)
class Released:
    """The source freed the request (`released`), or had already aborted it (not `released`)."""

    now: float
    released: bool


@dataclass(frozen=True)
class Refused:
    """An endpoint said no: `reason` is one word (see `SOURCE_GONE`), `detail` says more."""

    now: float
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class PeerLost:
    """A call failed: an instance died or broke (`detail` has the error)."""

    now: float
    detail: str


@dataclass(frozen=True)
class TimedOut:
    now: float
    detail: str


@dataclass(frozen=True)
class Abort:
    """The transfer's owner calls it off."""

    now: float
    detail: str = "aborted by its owner"


Event = (Described | Reserved | StageCopied | StepDone | Suspended | Committed | Released | Refused | PeerLost
         | TimedOut | Abort)


# ---- outcome ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransferOutcome:
    """What became of one transfer. `result`: `committed`, or why it ended without moving the
    request: `refused` (the destination said no; `reason` says why), `finished` (the request ended
    on the source first, or was aborted there during the move), `preempted` (the source preempted
    it), `timeout`, `failed` (an instance died or a call failed), `aborted` (by its owner); `detail`
    says more. `stages`: pre-copy stages, plus one for a committed stop-and-copy. `downtime_s`: from
    the suspension to the commit, as the driver's clock saw them."""

    order: MigrationOrder
    result: str
    reason: str = ""
    detail: str = ""
    stages: int = 0
    blocks: int = 0
    bytes: int = 0
    downtime_s: float = 0.0
    suspended_at: float | None = None

    @property
    def committed(self) -> bool:
        return self.result == "committed"

    @property
    def cause(self) -> str:
        """One word to count outcomes by: the refusal's reason, else the result."""
        return self.reason if self.result == "refused" else self.result
