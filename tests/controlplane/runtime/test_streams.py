"""Gateway-side streams: chunks in order and exactly once, broken streams fail, early close aborts."""

import asyncio

import pytest

from controlplane.runtime.streams import ChunkSequencer, StreamRouter
from flotilla.errors import InstanceUnavailable, StreamBroken
from instances.types import FinishReason, GenerationChunk


def _chunk(first: int, ids: list[int], finish: FinishReason | None = None) -> GenerationChunk:
    return GenerationChunk("r", first, ids, "".join(chr(i) for i in ids), finish_reason=finish)


def test_in_order_chunks_pass():
    seq = ChunkSequencer()
    a, b = _chunk(0, [97, 98]), _chunk(2, [99], FinishReason.STOP)
    assert seq.accept(a) is a
    assert seq.accept(b) is b
    assert seq.next_index == 3


def test_duplicates_are_dropped():
    seq = ChunkSequencer()
    seq.accept(_chunk(0, [97, 98]))
    assert seq.accept(_chunk(0, [97, 98])) is None
    assert seq.accept(_chunk(1, [98])) is None
    assert seq.next_index == 2


def test_duplicate_with_finish_reason_passes_only_the_finish():
    seq = ChunkSequencer()
    seq.accept(_chunk(0, [97]))
    out = seq.accept(_chunk(0, [97], FinishReason.LENGTH))
    assert out == GenerationChunk("r", 1, [], "", finish_reason=FinishReason.LENGTH)


def test_empty_finish_chunk_at_the_next_index_passes():
    seq = ChunkSequencer()
    seq.accept(_chunk(0, [97]))
    finish = _chunk(1, [], FinishReason.STOP)
    assert seq.accept(finish) is finish


def test_gap_raises():
    seq = ChunkSequencer()
    seq.accept(_chunk(0, [97]))
    with pytest.raises(StreamBroken, match=r"request r: output tokens 1\.\.2 are missing"):
        seq.accept(_chunk(3, [100]))


def test_overlap_raises():
    seq = ChunkSequencer()
    seq.accept(_chunk(0, [97, 98]))
    with pytest.raises(StreamBroken, match=r"chunk at 1\.\.2 overlaps tokens already relayed \(next is 2\)"):
        seq.accept(_chunk(1, [98, 99]))
    assert StreamBroken("x").status_code == 500


async def _drain(router: StreamRouter, rid: str, aborted: list[str]):
    async def abort():
        aborted.append(rid)

    return [c async for c in router.stream(rid, abort)]


async def test_router_orders_dedupes_and_ends_at_the_finish():
    router = StreamRouter()
    router.open("r", "i0")
    router.deliver([_chunk(0, [97]), _chunk(0, [97]), _chunk(1, [98, 99])])
    router.deliver([_chunk(3, [100], FinishReason.LENGTH), _chunk(4, [101])])
    aborted: list[str] = []
    got = await _drain(router, "r", aborted)
    assert [(c.first_index, c.token_ids) for c in got] == [(0, [97]), (1, [98, 99]), (3, [100])]
    assert aborted == []  # finished normally: nothing to abort
    router.deliver([_chunk(5, [1])])  # late chunks of a closed request are dropped


async def test_router_fails_a_stream_with_a_gap():
    router = StreamRouter()
    router.open("r", "i0")
    router.deliver([_chunk(0, [97]), _chunk(3, [98])])
    stream = router.stream("r", _never)
    assert (await stream.__anext__()).token_ids == [97]
    with pytest.raises(StreamBroken, match=r"output tokens 1\.\.2 are missing"):
        await stream.__anext__()


async def test_fail_instance_ends_only_its_streams():
    router = StreamRouter()
    router.open("a", "i0")
    router.open("b", "i1")
    router.fail_instance("i0", InstanceUnavailable("i0 died"))
    router.deliver([GenerationChunk("b", 0, [1], "x", finish_reason=FinishReason.STOP)])
    with pytest.raises(InstanceUnavailable, match="i0 died"):
        await _drain(router, "a", [])
    assert [c.token_ids for c in await _drain(router, "b", [])] == [[1]]


async def test_closing_early_aborts_once():
    router = StreamRouter()
    router.open("r", "i0")
    router.deliver([_chunk(0, [97])])
    aborted: list[str] = []

    async def abort():
        aborted.append("r")

    stream = router.stream("r", abort)
    await stream.__anext__()
    await stream.aclose()
    assert aborted == ["r"]
    router.open("r", "i0")  # the id is free again


async def test_discard_forgets_a_stream_that_never_started():
    router = StreamRouter()
    router.open("r", "i0")
    router.discard("r")
    router.open("r", "i1")
    waiter = asyncio.ensure_future(_drain(router, "r", []))
    router.deliver([GenerationChunk("r", 0, [5], "y", finish_reason=FinishReason.STOP)])
    assert [c.token_ids for c in await waiter] == [[5]]


async def _never():
    raise AssertionError("a broken stream is not aborted: it already ended")


async def test_after_a_move_chunks_past_a_gap_wait_for_the_gap_to_fill():
    """The destination's first chunks may overtake the source's last ones."""
    router = StreamRouter()
    router.open("r", "i0")
    router.deliver([_chunk(0, [97])])
    router.moved("r", "i1")
    assert router.instance_of("r") == "i1"
    router.deliver([_chunk(3, [100]), _chunk(4, [101], FinishReason.LENGTH)])  # from i1, early
    router.deliver([_chunk(1, [98, 99]), _chunk(1, [98, 99])])  # i0's last, and a duplicate
    got = await _drain(router, "r", [])
    assert [(c.first_index, c.token_ids) for c in got] == [(0, [97]), (1, [98, 99]), (3, [100]), (4, [101])]
    assert router.instance_of("r") is None


async def test_a_gap_left_by_a_failed_former_instance_fails_the_stream():
    router = StreamRouter()
    router.open("r", "i0")
    router.open("other", "i2")
    router.deliver([_chunk(0, [97])])
    router.moved("r", "i1")
    router.deliver([_chunk(2, [99])])  # token 1 was still on its way from i0
    router.fail_instance("i0", InstanceUnavailable("i0 died"))
    stream = router.stream("r", _never)
    assert (await stream.__anext__()).token_ids == [97]
    with pytest.raises(InstanceUnavailable, match="i0 died"):
        await stream.__anext__()
    router.deliver([GenerationChunk("other", 0, [1], "x", finish_reason=FinishReason.STOP)])
    assert [c.token_ids for c in await _drain(router, "other", [])] == [[1]]
