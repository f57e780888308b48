"""Profile rows: CSV round trip and malformed files."""

import pytest

from flotilla.errors import ConfigError
from instances.latency import ProfileRow, StepShape, read_rows, write_rows
from instances.latency.rows import COLUMNS


def test_round_trip(tmp_path):
    rows = [ProfileRow.of(StepShape.prefill(64, 64), 0.0123), ProfileRow.of(StepShape.decode(8, 100), 0.0021)]
    path = tmp_path / "p.csv"
    write_rows(path, rows)
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert COLUMNS == ("kind", "num_seqs", "prefill_tokens", "prefill_attn", "decode_batch", "decode_context",
                       "seconds")
    assert read_rows(path) == rows
    assert rows[0] == ProfileRow("prefill", 2, 128, 8192, 0, 0, 0.0123)
    assert rows[0].shape == StepShape.prefill(64, 64) and rows[1].shape == StepShape.decode(8, 100)


def test_mixed_steps_are_not_rows():
    with pytest.raises(ValueError):
        ProfileRow.of(StepShape(10, 100, 1, 1, 5), 0.01)


@pytest.mark.parametrize("content,expected", [
    ("kind,seconds\nprefill,1\n", "the header must be"),
    (",".join(COLUMNS) + "\nprefill,1,16,x,0,0,0.1\n", "line 2"),
    (",".join(COLUMNS) + "\nmixed,1,16,256,0,0,0.1\n", "kind must be one of"),
    (",".join(COLUMNS) + "\ndecode,1,0,0,1,16,-1\n", "seconds > 0"),
    (",".join(COLUMNS) + "\nprefill,1,16,256,2,30,0.1\n", "the other kind's columns 0"),
    (",".join(COLUMNS) + "\ndecode,3,0,0,1,16,0.1\n", "the other kind's columns 0"),
])
def test_malformed_csv(tmp_path, content, expected):
    path = tmp_path / "p.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=expected):
        read_rows(path)
