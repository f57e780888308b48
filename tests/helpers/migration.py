"""What the migration tests of both runtimes share: requests (greedy and seeded), the tokens of an
unmigrated run, a stream checked for gaps and duplicates, and an observer keeping the outcomes."""

from __future__ import annotations

import random

from controlplane.scheduling.migration import MigrationOrder
from controlplane.transfer.protocol import TransferOutcome
from instances.engine.config import EngineConfig
from instances.models.loader import LoadedModel, load_model
from instances.replica import Replica, ReplicaSpec
from instances.types import EngineRequest, SamplingParams


def make_requests(n: int, seed: int, prefix: str, max_tokens: tuple[int, int] = (60, 120),
                  prompt_len: tuple[int, int] = (10, 200)) -> list[EngineRequest]:
    """`n` requests with random prompts; every third one sampled with its own seed, the rest greedy."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = [rng.randrange(3, 250) for _ in range(rng.randrange(*prompt_len))]
        seeded = i % 3 == 2
        sampling = SamplingParams(max_tokens=rng.randrange(*max_tokens), temperature=0.8 if seeded else 0.0,
                                  seed=500 + i if seeded else None, ignore_eos=True)
        out.append(EngineRequest(f"{prefix}{i}", prompt, sampling))
    return out


def reference(engine: EngineConfig, reqs: list[EngineRequest], loaded: LoadedModel | None = None) -> dict[str, list[int]]:
    """Tokens of every request run together on one tiny-llama engine, no migration."""
    replica = Replica.build(ReplicaSpec("ref", "tiny-llama", engine), loaded or load_model("tiny-llama"))
    for r in reqs:
        replica.add(r)
    out: dict[str, list[int]] = {r.request_id: [] for r in reqs}
    while replica.has_work():
        for c in replica.step():
            out[c.request_id].extend(c.token_ids)
    return out


async def stream(cluster, iid: str, req: EngineRequest) -> list[int]:
    """Stream `req` from `iid` through `cluster` (either runtime), every token once, in order."""
    tokens: list[int] = []
    async for chunk in cluster.generate(iid, req):
        assert chunk.first_index == len(tokens)  # no duplicate, no gap
        tokens.extend(chunk.token_ids)
    return tokens


class Outcomes(list):
    """A MigrationObserver keeping the outcomes."""

    def migration_started(self, order: MigrationOrder) -> None:
        pass

    def migration_finished(self, outcome: TransferOutcome) -> None:
        self.append(outcome)
