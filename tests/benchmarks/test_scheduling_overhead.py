"""The scheduling-overhead benchmark: its views, flags, table and JSON, at toy sizes."""

from __future__ import annotations

import json

import pytest

from benchmarks.scheduling_overhead import BASELINE, format_table, main, make_views, parse_args


def test_views_are_seeded_healthy_and_shuffled():
    views = make_views(64, seed=3)
    assert views == make_views(64, seed=3)
    assert all(v.healthy for v in views)
    ids = [v.instance_id for v in views]
    assert len(set(ids)) == 64 and ids != sorted(ids)


@pytest.mark.parametrize("argv", [["--sizes", "16,x"], ["--sizes", "0"], ["--repeats", "0"]])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("scheduling_overhead: error:")


def test_table_has_a_row_per_profile_and_a_column_per_size():
    table = {BASELINE: {4: 1.0, 8: 2.0}, "default": {4: 3.25, 8: 4.5}}
    assert format_table(table, [4, 8]).splitlines() == [
        "| profile | 4 inst. (us) | 8 inst. (us) |",
        "|---|---:|---:|",
        "| sort only (baseline) | 1.0 | 2.0 |",
        "| default | 3.2 | 4.5 |",
    ]


def test_main_writes_every_profile_and_size(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["--sizes", "2,5", "--decisions", "3", "--repeats", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert list(results) == [
        BASELINE,
        "default",
        "round-robin",
        "random",
        "least-requests",
        "power-of-two",
        "infaas",
    ]
    assert all(set(row) == {"2", "5"} and min(row.values()) > 0 for row in results.values())
    assert "| infaas |" in capsys.readouterr().out
