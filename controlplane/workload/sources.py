"""Named traces: `azure-conv`, `mooncake` and `sharegpt` resolve to the shared data directory.

The shared data directory is `<repo root>/../shared/data` (for the checkout at /work/main that is
/work/shared/data); see its README for the files' sources and licences.
"""

from __future__ import annotations

from pathlib import Path

from controlplane.workload.loaders import Trace, load_trace_file

TRACE_FILES: dict[str, str] = {
    "azure-conv": "azure_llm_2023_conv.csv",
    "mooncake": "mooncake_synthetic_trace.jsonl",
    "sharegpt": "sharegpt_lengths_10k.csv",
}

AZURE_CONV_RATE = 19366 / 3502
"""Mean request rate (req/s) of the `azure-conv` trace as published: 19,366 requests over 3,502 s.
Divide a target rate by it to get the `rate_scale` that replays the trace at that mean rate."""


def shared_data_dir() -> Path:
    """`<repo root>/../shared/data`, where the repo root holds the `controlplane` package."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def resolve_trace(name_or_path: str, data_dir: Path | None = None) -> Path:
    """The file for a trace name from `TRACE_FILES` (looked up in `data_dir`, by default
    `shared_data_dir()`), or `name_or_path` itself as a path.

    Raises FileNotFoundError naming the path that does not exist.
    """
    if name_or_path in TRACE_FILES:
        path = (data_dir or shared_data_dir()) / TRACE_FILES[name_or_path]
        if not path.is_file():
            raise FileNotFoundError(f"trace {name_or_path!r} expects the file {path}, which is missing")
        return path
    path = Path(name_or_path)
    if not path.is_file():
        known = ", ".join(TRACE_FILES)
        raise FileNotFoundError(f"trace file not found: {path} (named traces: {known})")
    return path


def load_trace(name_or_path: str, data_dir: Path | None = None) -> Trace:
    """Resolve `name_or_path` (see `resolve_trace`) and load it (see `load_trace_file`)."""
    return load_trace_file(resolve_trace(name_or_path, data_dir))
