"""Profile rows: measured step times of known shapes, as `flotilla profile` writes them to CSV.

One row per timed engine step. `kind` is "prefill" (only prefill chunks in the step; `num_seqs` of
them) or "decode" (only decodes; `num_seqs == decode_batch`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from flotilla.errors import ConfigError
from instances.latency.shape import StepShape

KINDS = ("prefill", "decode")


@dataclass(frozen=True)
class ProfileRow:
    """The measured `seconds` of one step of the given shape."""

    kind: str
    num_seqs: int
    prefill_tokens: int
    prefill_attn: int
    decode_batch: int
    decode_context: int
    seconds: float

    @classmethod
    def of(cls, shape: StepShape, seconds: float) -> ProfileRow:
        """The row of a prefill-only or decode-only step; ValueError for a mixed or empty one."""
        if shape.prefill_tokens and not shape.decode_batch:
            return cls("prefill", shape.num_prefills, shape.prefill_tokens, shape.prefill_attn, 0, 0, seconds)
        if shape.decode_batch and not shape.prefill_tokens:
            return cls("decode", shape.decode_batch, 0, 0, shape.decode_batch, shape.decode_context, seconds)
        raise ValueError(f"a profile row is a prefill-only or a decode-only step, not {shape}")

    @property
    def shape(self) -> StepShape:
        n_prefills = self.num_seqs if self.kind == "prefill" else 0
        return StepShape(self.prefill_tokens, self.prefill_attn, n_prefills, self.decode_batch, self.decode_context)


COLUMNS = tuple(f.name for f in fields(ProfileRow))


def write_rows(path: str | Path, rows: Iterable[ProfileRow]) -> None:
    """Write `rows` as CSV with a header of `COLUMNS`."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for row in rows:
            out.writerow(astuple(row)[:-1] + (repr(row.seconds),))


def read_rows(path: str | Path) -> list[ProfileRow]:
    """Read a profile CSV; ConfigError (one line, naming the file and line) when it is malformed."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or tuple(reader.fieldnames) != COLUMNS:
                raise ConfigError(f"profile {path}: the header must be {','.join(COLUMNS)}, "
                                  f"got {','.join(reader.fieldnames or [])}")
            return [_row(path, reader.line_num, record) for record in reader]
    except OSError as e:
        raise ConfigError(f"cannot read profile {path}: {e.strerror}") from e


def _row(path: str | Path, line: int, record: dict[str, str]) -> ProfileRow:
    try:
        row = ProfileRow(record["kind"], *(int(record[c]) for c in COLUMNS[1:-1]), float(record["seconds"]))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"profile {path} line {line}: {e}") from e
    if row.kind not in KINDS or not math.isfinite(row.seconds) or row.seconds <= 0:
        raise ConfigError(f"profile {path} line {line}: kind must be one of {KINDS} and seconds > 0")
    try:
        consistent = row.num_seqs > 0 and ProfileRow.of(row.shape, row.seconds) == row
    except ValueError:
        consistent = False
    if not consistent:
        raise ConfigError(f"profile {path} line {line}: a {row.kind} row needs num_seqs > 0, its own columns > 0 "
                          "and the other kind's columns 0")
    return row
