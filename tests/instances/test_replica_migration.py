"""Migration verbs of a replica: staged copies, stop-and-copy, commit, abort paths, exact outputs."""

from __future__ import annotations

import random

import pytest

from flotilla.errors import TransferRefused
from instances.engine.config import EngineConfig
from instances.kv_transfer import CorruptPages
from instances.models.loader import load_model
from instances.replica import Replica, ReplicaSpec
from instances.types import EngineRequest, FinishReason, Priority, SamplingParams

ENGINE = EngineConfig(block_size=4, num_blocks=96, max_num_batched_tokens=64, max_num_seqs=8, max_model_len=256)


@pytest.fixture(scope="module")
def loaded():
    return load_model("tiny-llama")


def replica(loaded, iid: str, **overrides) -> Replica:
    cfg = EngineConfig(**{**ENGINE.__dict__, **overrides})
    return Replica.build(ReplicaSpec(iid, "tiny-llama", cfg), loaded)


def requests(n: int, seed: int) -> list[EngineRequest]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = [rng.randrange(3, 250) for _ in range(rng.randrange(3, 40))]
        seeded = i % 3 == 2
        sampling = SamplingParams(max_tokens=rng.randrange(20, 50), temperature=0.9 if seeded else 0.0,
                                  seed=1000 + i if seeded else None, ignore_eos=True)
        out.append(EngineRequest(f"r{i}", prompt, sampling))
    return out


class Collector:
    """Chunks per request, checked contiguous (no duplicate, no gap) as they come."""

    def __init__(self) -> None:
        self.tokens: dict[str, list[int]] = {}
        self.text: dict[str, str] = {}
        self.finished: set[str] = set()

    def take(self, chunks) -> None:
        for c in chunks:
            got = self.tokens.setdefault(c.request_id, [])
            assert c.first_index == len(got), (c.request_id, c.first_index, len(got))
            got.extend(c.token_ids)
            self.text[c.request_id] = self.text.get(c.request_id, "") + c.text
            if c.finish_reason is not None:
                self.finished.add(c.request_id)


def run_alone(loaded, reqs, out: Collector | None = None) -> Collector:
    """Every request run on one replica, no migration, collected into `out` (a new Collector)."""
    r = replica(loaded, "ref")
    out = Collector() if out is None else out
    for req in reqs:
        r.add(req)
    while r.has_work():
        out.take(r.step())
    return out


def migrate(src: Replica, dst: Replica, rid: str, out: Collector, *, stages: int, steps_between: int = 2) -> bool:
    """Drive the protocol as the controller does, stepping both replicas between stages; False if
    the request finished before the stop-and-copy."""
    seq = src.engine.scheduler.requests[rid]
    dst.reserve(rid, "tiny-llama", seq.num_tokens)
    sent = 0
    for _ in range(stages):
        if rid not in src.engine.scheduler.requests:
            break
        while True:  # in chunks of at most 3 blocks, as the migrator copies a stage
            ack = dst.import_stage(src.export_stage(rid, sent, 3))
            assert ack.num_pages <= 3
            if ack.remaining == 0:
                break
            sent = ack.first_block + ack.num_pages
        sent = ack.full_blocks
        for _ in range(steps_between):
            out.take(src.step())
            out.take(dst.step())
    if rid not in src.engine.scheduler.requests:  # it finished while being copied
        assert dst.cancel_reservation(rid)
        return False
    payload = src.suspend(rid, sent)
    out.take(src.step())  # the suspended request is neither stepped nor reported
    dst.commit(payload)
    assert src.release_migrated(rid)
    return True


def blocks_in_use(r: Replica) -> int:
    return r.engine.config.num_blocks - r.engine.stats().free_blocks


def test_outputs_identical_with_migrations_at_random_points(loaded):
    reqs = requests(8, seed=3)
    expected = run_alone(loaded, reqs)
    src, dst = replica(loaded, "a"), replica(loaded, "b")
    out = Collector()
    for req in reqs:
        src.add(req)
    rng = random.Random(7)
    moved = []  # stages of each committed migration
    for step in range(400):
        if not (src.has_work() or dst.has_work()):
            break
        out.take(src.step())
        out.take(dst.step())
        running = [s.request_id for s in src.engine.scheduler.running]
        if step % 3 == 1 and running:
            stages = rng.randrange(0, 4)
            if migrate(src, dst, rng.choice(running), out, stages=stages):
                moved.append(stages)
        back = [s.request_id for s in dst.engine.scheduler.running]
        if step % 7 == 5 and back and migrate(dst, src, rng.choice(back), out, stages=1):  # and back again
            moved.append(1)
    assert len(moved) >= 8 and {0, 1, 2, 3} <= set(moved)  # including multi-stage ones
    assert out.finished == {r.request_id for r in reqs}
    assert out.tokens == expected.tokens
    assert out.text == expected.text
    assert blocks_in_use(src) == blocks_in_use(dst) == 0


def test_queued_request_moves_without_kv(loaded):
    src, dst = replica(loaded, "a", max_num_seqs=1), replica(loaded, "b")
    reqs = requests(2, seed=5)
    expected = run_alone(loaded, reqs)
    out = Collector()
    for req in reqs:
        src.add(req)
    out.take(src.step())  # r0 runs, r1 waits (one running slot)
    assert [s.request_id for s in src.engine.scheduler.running] == ["r0"]
    payload = src.suspend("r1", 0)
    assert payload.state.num_computed_tokens == 0 and payload.pages.num_pages == 0
    dst.commit(payload)  # no reservation needed
    assert src.release_migrated("r1")
    while src.has_work() or dst.has_work():
        out.take(src.step())
        out.take(dst.step())
    assert out.tokens == expected.tokens


def test_failed_migration_resumes_on_source_and_frees_reservation(loaded):
    reqs = requests(3, seed=11)
    expected = run_alone(loaded, reqs)
    src, dst = replica(loaded, "a"), replica(loaded, "b")
    out = Collector()
    for req in reqs:
        src.add(req)
    for _ in range(4):
        out.take(src.step())
    free_before = dst.engine.stats().free_blocks
    seq = src.engine.scheduler.requests["r1"]
    dst.reserve("r1", "tiny-llama", seq.num_tokens)
    dst.import_stage(src.export_stage("r1", 0))
    payload = src.suspend("r1", 0)
    payload.pages.data = payload.pages.data.copy()
    payload.pages.data[0, 0] ^= 0xFF  # corrupted in transit
    with pytest.raises(CorruptPages):
        dst.commit(payload)
    assert dst.cancel_reservation("r1")
    assert dst.engine.stats().free_blocks == free_before
    assert src.resume("r1")
    while src.has_work():
        out.take(src.step())
    assert out.tokens == expected.tokens
    assert blocks_in_use(src) == 0


def test_refusals(loaded):
    src = replica(loaded, "a")
    dst = replica(loaded, "b", num_blocks=8, max_model_len=32)
    with pytest.raises(TransferRefused) as e:
        dst.reserve("x", "other-model", 4)
    assert e.value.reason == "wrong_model"
    with pytest.raises(TransferRefused) as e:
        dst.reserve("x", "tiny-llama", 30 * 4)
    assert e.value.reason == "too_long"
    dst.reserve("x", "tiny-llama", 28)  # 7 of 8 blocks
    with pytest.raises(TransferRefused) as e:
        dst.reserve("y", "tiny-llama", 8)
    assert e.value.reason == "no_room"
    with pytest.raises(TransferRefused) as e:
        dst.reserve("x", "tiny-llama", 4)
    assert e.value.reason == "duplicate"
    assert dst.cancel_reservation("x")
    dst.engine.set_draining(True)
    with pytest.raises(TransferRefused) as e:
        dst.reserve("y", "tiny-llama", 4)
    assert e.value.reason == "draining"
    with pytest.raises(ValueError, match="draining"):
        dst.add(requests(1, seed=1)[0])
    with pytest.raises(TransferRefused) as e:
        src.suspend("nobody", 0)
    assert e.value.reason == "finished"
    assert dst.engine.stats().free_blocks == 8 and dst.engine.stats().draining


def test_watchdog_frees_reservations_not_touched_in_time(loaded):
    now = [100.0]
    dst = replica(loaded, "b", reservation_timeout_s=5.0)
    dst.engine.clock = lambda: now[0]
    dst.reserve("x", "tiny-llama", 40)
    dst.reserve("y", "tiny-llama", 40)
    now[0] = 103.0
    dst.engine.extend_reservation("y", 44)  # touched: its deadline moves to 108
    now[0] = 105.0
    assert dst.engine.expire_reservations() == ["x"]
    now[0] = 108.0
    assert dst.engine.expire_reservations() == ["y"]
    assert blocks_in_use(dst) == 0


def test_abort_of_a_suspended_request_frees_it_and_release_says_so(loaded):
    src = replica(loaded, "a")
    req = requests(1, seed=2)[0]
    src.add(req)
    src.step()
    src.suspend(req.request_id, 0)
    src.abort(req.request_id)
    chunks = src.step()
    assert [c.finish_reason for c in chunks] == [FinishReason.ABORT]
    assert not src.release_migrated(req.request_id)
    assert not src.resume(req.request_id)
    assert blocks_in_use(src) == 0


def test_high_priority_count_and_head_demand(loaded):
    r = replica(loaded, "a", max_num_seqs=1)
    hi = EngineRequest("hi", [5] * 10, SamplingParams(max_tokens=4), priority=Priority.HIGH)
    lo = EngineRequest("lo", [5] * 9, SamplingParams(max_tokens=4), priority=Priority.LOW)
    r.add(hi)
    r.add(lo)
    r.step()
    stats = r.engine.stats()
    assert stats.high_priority == 1
    assert stats.head_demand_blocks == 3  # "lo" waits: 9 tokens in blocks of 4
    r.abort("hi")
    assert r.engine.stats().high_priority == 0


def test_a_queued_request_that_started_running_before_the_suspend_still_moves(loaded):
    src, dst = replica(loaded, "a"), replica(loaded, "b")
    req = requests(1, seed=8)[0]
    expected = run_alone(loaded, [req])
    out = Collector()
    src.add(req)
    assert not src.describe(req.request_id).running  # queued: the controller reserves nothing
    out.take(src.step())  # ... and it is admitted before the stop-and-copy
    payload = src.suspend(req.request_id, 0)
    assert payload.state.num_computed_tokens > 0
    dst.commit(payload)  # reserves on the spot
    assert src.release_migrated(req.request_id)
    while dst.has_work():
        out.take(dst.step())
    assert out.tokens == expected.tokens
    assert blocks_in_use(src) == blocks_in_use(dst) == 0
