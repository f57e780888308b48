"""Trace file loaders: Azure LLM inference CSV, Mooncake JSONL and length-only CSVs.

Every loader returns requests in file order with arrivals relative to the first request, and
raises ValueError naming the file and line of the first bad record (or the file when it holds no
request). Lengths must be positive integers; timestamps must not go backwards.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from controlplane.workload.request import TraceRequest

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
SHAREGPT_COLUMNS = ("num_prefill_tokens", "num_decode_tokens")


@dataclass(frozen=True)
class Trace:
    """A loaded trace. `timed` is False for length-only sources, whose arrivals are all 0."""

    path: Path
    requests: tuple[TraceRequest, ...]
    timed: bool


class TraceFormatError(ValueError):
    """A trace file that cannot be read; the message starts with `file:line:`."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.message = path, line, message

    def __reduce__(self) -> tuple[type[TraceFormatError], tuple[Path, int | None, str]]:
        return type(self), (self.path, self.line, self.message)  # pickles (to and from worker processes)


def load_azure_csv(path: Path) -> Trace:
    """Load an Azure LLM inference trace (`TIMESTAMP, ContextTokens, GeneratedTokens`).

    TIMESTAMP is an ISO datetime string (`2023-11-16 18:15:46.6805900`; digits past microseconds
    are dropped); arrivals are seconds since the first row's timestamp.
    """
    requests = []
    first: datetime | None = None
    last_arrival = 0.0
    for line, row in _csv_rows(path, AZURE_COLUMNS):
        try:
            stamp = datetime.fromisoformat(row["TIMESTAMP"].strip())
        except ValueError:
            raise TraceFormatError(path, line, f"bad TIMESTAMP {row['TIMESTAMP']!r}") from None
        first = stamp if first is None else first
        try:
            arrival = (stamp - first).total_seconds()
        except TypeError:
            raise TraceFormatError(path, line, "TIMESTAMP mixes naive and zoned times") from None
        last_arrival = _check_order(path, line, arrival, last_arrival)
        requests.append(
            TraceRequest(
                arrival_s=arrival,
                prompt_len=_positive(path, line, "ContextTokens", row["ContextTokens"]),
                output_len=_positive(path, line, "GeneratedTokens", row["GeneratedTokens"]),
            )
        )
    return Trace(path, _nonempty(path, requests), timed=True)


def load_length_csv(path: Path, columns: tuple[str, str] = SHAREGPT_COLUMNS) -> Trace:
    """Load a length-only CSV (ShareGPT: `num_prefill_tokens, num_decode_tokens`).

    `columns` names the prompt-length and output-length columns; other columns are ignored.
    All arrivals are 0: pair the result with `controlplane.workload.arrivals.with_arrivals`.
    """
    prompt_col, output_col = columns
    requests = [
        TraceRequest(
            arrival_s=0.0,
            prompt_len=_positive(path, line, prompt_col, row[prompt_col]),
            output_len=_positive(path, line, output_col, row[output_col]),
        )
        for line, row in _csv_rows(path, columns)
    ]
    return Trace(path, _nonempty(path, requests), timed=False)


def load_mooncake_jsonl(path: Path) -> Trace:
    """Load a Mooncake trace: one JSON object per line with `timestamp` (ms), `input_length`,
    `output_length` and `hash_ids` (one id per 512-token prompt block). Blank lines are skipped.
    """
    requests = []
    first: float | None = None
    last_arrival = 0.0
    with _open(path) as lines:
        for line, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            record = _json_object(path, line, text)
            stamp = record.get("timestamp")
            if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not stamp >= 0:
                raise TraceFormatError(path, line, f"timestamp must be a number >= 0, got {stamp!r}")
            first = float(stamp) if first is None else first
            last_arrival = _check_order(path, line, (stamp - first) / 1000.0, last_arrival)
            hash_ids = record.get("hash_ids")
            if not isinstance(hash_ids, list) or not all(_is_int(h) and h >= 0 for h in hash_ids):
                raise TraceFormatError(path, line, "hash_ids must be a list of non-negative integers")
            prompt_len = _positive(path, line, "input_length", record.get("input_length"))
            output_len = _positive(path, line, "output_length", record.get("output_length"))
            try:
                request = TraceRequest(last_arrival, prompt_len, output_len, tuple(hash_ids))
            except ValueError as exc:
                raise TraceFormatError(path, line, str(exc)) from None
            requests.append(request)
    return Trace(path, _nonempty(path, requests), timed=True)


def load_trace_file(path: Path) -> Trace:
    """Load `path`, choosing the loader from its suffix (`.jsonl`: Mooncake) or CSV header
    (`TIMESTAMP`: Azure; `num_prefill_tokens`: length-only)."""
    if path.suffix == ".jsonl":
        return load_mooncake_jsonl(path)
    if path.suffix != ".csv":
        raise TraceFormatError(path, None, "unknown trace format: expected a .csv or .jsonl file")
    with _open(path) as lines:
        header = [name.strip() for name in next(csv.reader(lines), [])]
    if AZURE_COLUMNS[0] in header:
        return load_azure_csv(path)
    if SHAREGPT_COLUMNS[0] in header:
        return load_length_csv(path)
    raise TraceFormatError(
        path, 1, f"unknown CSV header {header}: expected {list(AZURE_COLUMNS)} or {list(SHAREGPT_COLUMNS)}"
    )


def _open(path: Path) -> TextIO:
    if not path.is_file():
        raise FileNotFoundError(f"trace file not found: {path}")
    return path.open(newline="", encoding="utf-8")


def _csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    with _open(path) as lines:
        reader = csv.reader(lines)
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise TraceFormatError(path, 1, f"missing column(s) {missing}; header is {header}")
        for fields in reader:
            if not fields:
                continue
            if len(fields) != len(header):
                raise TraceFormatError(
                    path, reader.line_num, f"expected {len(header)} fields, got {len(fields)}"
                )
            yield reader.line_num, dict(zip(header, fields, strict=True))


def _json_object(path: Path, line: int, text: str) -> dict[str, object]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(path, line, f"invalid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise TraceFormatError(path, line, "expected a JSON object")
    return record


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(path: Path, line: int, name: str, value: object) -> int:
    """`value` (a JSON int or a CSV field of ASCII digits) as an int >= 1."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise TraceFormatError(path, line, f"{name} must be a positive integer, got {value!r}")


def _check_order(path: Path, line: int, arrival: float, last_arrival: float) -> float:
    if arrival < last_arrival:
        raise TraceFormatError(path, line, f"timestamp goes backwards ({arrival}s < {last_arrival}s)")
    return arrival


def _nonempty(path: Path, requests: list[TraceRequest]) -> tuple[TraceRequest, ...]:
    if not requests:
        raise TraceFormatError(path, None, "holds no requests")
    return tuple(requests)
