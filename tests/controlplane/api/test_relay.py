import pytest

from controlplane.api.relay import ChunkSequencer, StreamBroken
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
