"""Trace loaders on small hand-written files, including malformed ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controlplane.workload import (
    TRACE_FILES,
    TraceRequest,
    load_azure_csv,
    load_length_csv,
    load_mooncake_jsonl,
    load_trace,
    load_trace_file,
    resolve_trace,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:46.6805900,10,1
2023-11-16 18:15:50.9951690,396,109
"""


def test_azure_arrivals_are_relative_to_the_first_row(tmp_path: Path) -> None:
    trace = load_azure_csv(write(tmp_path, "a.csv", AZURE))
    assert trace.timed
    assert trace.requests == (
        TraceRequest(0.0, 374, 44),
        TraceRequest(0.0, 10, 1),
        TraceRequest(4.314579, 396, 109),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("2023-11-16 18:15:47,1,1\nnot a time,1,1\n", "a.csv:3: bad TIMESTAMP 'not a time'"),
        ("2023-11-16 18:15:47,1,1\n2023-11-16 18:15:46,1,1\n", "a.csv:3: timestamp goes backwards"),
        ("2023-11-16 18:15:47,0,1\n", "a.csv:2: ContextTokens must be a positive integer, got 0"),
        ("2023-11-16 18:15:47,5,1.5\n", "a.csv:2: GeneratedTokens must be a positive integer, got '1.5'"),
        ("2023-11-16 18:15:47,5\n", "a.csv:2: expected 3 fields, got 2"),
        ("", "a.csv: holds no requests"),
    ],
)
def test_azure_malformed_rows_name_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n" + body)
    with pytest.raises(ValueError) as info:
        load_azure_csv(path)
    assert str(info.value).startswith(f"{tmp_path}/{message}")


def test_csv_missing_column_is_reported_on_line_1(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "num_prefill_tokens,other\n1,2\n")
    with pytest.raises(ValueError, match=r"s\.csv:1: missing column\(s\) \['num_decode_tokens'\]"):
        load_length_csv(path)


def test_length_csv_has_untimed_requests(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.csv",
        "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n3742,284,4026,0.07\n18,243,261,13.5\n",
    )
    trace = load_length_csv(path)
    assert not trace.timed
    assert trace.requests == (TraceRequest(0.0, 3742, 284), TraceRequest(0.0, 18, 243))


MOONCAKE = (
    '{"timestamp": 0, "input_length": 1030, "output_length": 6, "hash_ids": [0, 1, 2]}\n'
    "\n"
    '{"timestamp": 40, "input_length": 512, "output_length": 3, "hash_ids": [0]}\n'
)


def test_mooncake_arrivals_in_seconds_and_blank_lines_skipped(tmp_path: Path) -> None:
    trace = load_mooncake_jsonl(write(tmp_path, "m.jsonl", MOONCAKE))
    assert trace.timed
    assert trace.requests == (
        TraceRequest(0.0, 1030, 6, (0, 1, 2), 512),
        TraceRequest(0.04, 512, 3, (0,), 512),
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "m.jsonl:2: invalid JSON"),
        ("[1, 2]", "m.jsonl:2: expected a JSON object"),
        (
            '{"timestamp": -1, "input_length": 1, "output_length": 1, "hash_ids": [0]}',
            "m.jsonl:2: timestamp must be",
        ),
        (
            '{"timestamp": 5, "input_length": 1, "output_length": 1, "hash_ids": [-3]}',
            "m.jsonl:2: hash_ids must be",
        ),
        (
            '{"timestamp": 5, "input_length": true, "output_length": 1, "hash_ids": [0]}',
            "m.jsonl:2: input_length must be",
        ),
        (
            '{"timestamp": 5, "input_length": 1, "hash_ids": [0]}',
            "m.jsonl:2: output_length must be a positive integer, got None",
        ),
        (
            '{"timestamp": 5, "input_length": 513, "output_length": 1, "hash_ids": [0]}',
            "m.jsonl:2: a 513-token prompt in 512-token blocks needs 2 hash ids, got 1",
        ),
    ],
)
def test_mooncake_malformed_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    first = '{"timestamp": 1, "input_length": 1, "output_length": 1, "hash_ids": [0]}\n'
    path = write(tmp_path, "m.jsonl", first + line + "\n")
    with pytest.raises(ValueError) as info:
        load_mooncake_jsonl(path)
    assert str(info.value).startswith(f"{tmp_path}/{message}")


def test_load_trace_file_sniffs_the_format(tmp_path: Path) -> None:
    assert load_trace_file(write(tmp_path, "a.csv", AZURE)).timed
    assert load_trace_file(write(tmp_path, "m.jsonl", MOONCAKE)).requests[1].hash_ids == (0,)
    sharegpt = write(tmp_path, "s.csv", "num_prefill_tokens,num_decode_tokens\n7,8\n")
    assert load_trace_file(sharegpt).requests == (TraceRequest(0.0, 7, 8),)
    with pytest.raises(ValueError, match=r"x\.csv:1: unknown CSV header \['a', 'b'\]"):
        load_trace_file(write(tmp_path, "x.csv", "a,b\n1,2\n"))
    with pytest.raises(ValueError, match=r"x\.txt: unknown trace format"):
        load_trace_file(write(tmp_path, "x.txt", "1\n"))


def test_named_traces_resolve_in_the_data_dir(tmp_path: Path) -> None:
    write(tmp_path, TRACE_FILES["sharegpt"], "num_prefill_tokens,num_decode_tokens\n7,8\n")
    assert resolve_trace("sharegpt", tmp_path) == tmp_path / TRACE_FILES["sharegpt"]
    assert load_trace("sharegpt", tmp_path).requests == (TraceRequest(0.0, 7, 8),)
    missing = tmp_path / TRACE_FILES["mooncake"]
    with pytest.raises(FileNotFoundError, match=re.escape(f"expects the file {missing}, which is missing")):
        resolve_trace("mooncake", tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape("trace file not found: nowhere.csv")):
        resolve_trace("nowhere.csv", tmp_path)


def test_default_data_dir_is_the_shared_directory_next_to_the_repo() -> None:
    repo_root = Path(__file__).resolve().parents[3]
    expected = repo_root.parent / "shared" / "data" / TRACE_FILES["azure-conv"]
    if expected.is_file():
        assert resolve_trace("azure-conv") == expected
    else:
        with pytest.raises(FileNotFoundError, match=re.escape(str(expected))):
            resolve_trace("azure-conv")


def test_a_trace_format_error_pickles_with_its_fields(tmp_path):
    import pickle

    from controlplane.workload.loaders import TraceFormatError

    err = TraceFormatError(tmp_path / "t.csv", 7, "bad TIMESTAMP 'x'")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), str(back), back.line, back.message) == (TraceFormatError, str(err), 7, "bad TIMESTAMP 'x'")
