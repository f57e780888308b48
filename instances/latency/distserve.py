"""`DistServeModel`: step time as two fitted polynomials, in the form of DistServe's simulator.

DistServe (Zhong et al., OSDI 2024, arXiv:2401.09670, section 4 and its `simdistserve` simulator)
prices a prefill batch as a + b * tokens + c * tokens^2 and a decode batch as linear in the total
context. Here, for a step of shape s (see `StepShape`):

    prefill part = a_p + b_p * s.prefill_tokens + c_p * s.prefill_attn      (if s.prefill_tokens > 0)
    decode part  = a_d + b_d * s.decode_context + c_d * s.decode_batch      (if s.decode_batch > 0)
    step_time    = prefill part + decode part

`prefill_attn` (sum of new * context per chunk) stands for tokens^2: it is n^2 for a whole prompt
of n tokens and prices a chunk that attends to an earlier context correctly. A mixed step costs
the sum of its two parts. Coefficients are non-negative, so step_time is monotone in every term.

The coefficients file is JSON:

    {"form": "distserve", "prefill": {"a": .., "b": .., "c": ..}, "decode": {"a": .., "b": .., "c": ..},
     "source": "where the numbers come from", "fit": {...optional fit quality, ignored on load}}
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flotilla.errors import ConfigError
from instances.latency.rows import ProfileRow
from instances.latency.shape import StepShape

FORM = "distserve"
PARTS = ("prefill", "decode")
_KEYS = {"form", "prefill", "decode", "source", "fit"}


@dataclass(frozen=True)
class Coefficients:
    """a + b * x + c * y of one part (x, y as in the module docstring)."""

    a: float
    b: float
    c: float


@dataclass(frozen=True)
class DistServeModel:
    """A `LatencyModel` from fitted DistServe-form coefficients (see the module docstring).

    ConfigError unless every coefficient is finite and >= 0 and each part has one > 0 (so that every
    non-empty step takes a positive time).
    """

    prefill: Coefficients
    decode: Coefficients
    source: str = ""

    def __post_init__(self) -> None:
        for part in PARTS:
            coeffs = _values(getattr(self, part))
            if not all(math.isfinite(v) and v >= 0 for v in coeffs) or not any(v > 0 for v in coeffs):
                raise ConfigError(
                    f"distserve {part} coefficients must be finite, >= 0 and not all 0, got {coeffs}"
                )

    def step_time(self, shape: StepShape) -> float:
        t = 0.0
        if shape.prefill_tokens:
            p = self.prefill
            t += p.a + p.b * shape.prefill_tokens + p.c * shape.prefill_attn
        if shape.decode_batch:
            d = self.decode
            t += d.a + d.b * shape.decode_context + d.c * shape.decode_batch
        elif not shape.prefill_tokens:
            raise ValueError("an empty step has no latency: the shape schedules no tokens")
        return t

    def describe(self) -> dict[str, Any]:
        return {"kind": FORM, "prefill": asdict(self.prefill), "decode": asdict(self.decode),
                "source": self.source}

    def to_json(self) -> dict[str, Any]:
        """The coefficients file's content."""
        return {"form": FORM, "prefill": asdict(self.prefill), "decode": asdict(self.decode),
                "source": self.source}

    def save(self, path: str | Path) -> None:
        _write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> DistServeModel:
        """Read a coefficients file; ConfigError (one line naming the file) when it is unusable."""
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read latency coefficients {path}: {e.strerror}") from e
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"latency coefficients {path} is not JSON: {e.msg} at line {e.lineno}") from e
        if not isinstance(data, dict) or data.get("form") != FORM:
            form = data.get("form") if isinstance(data, dict) else None
            raise ConfigError(f"latency coefficients {path}: \"form\" must be {FORM!r}, got {form!r}")
        unknown = sorted(data.keys() - _KEYS)
        if unknown:
            raise ConfigError(f"latency coefficients {path}: unknown keys {unknown}; known: {sorted(_KEYS)}")
        source = data.get("source", "")
        if not isinstance(source, str):
            raise ConfigError(f"latency coefficients {path}: \"source\" must be a string")
        prefill, decode = _coefficients(path, data, "prefill"), _coefficients(path, data, "decode")
        try:
            return cls(prefill, decode, source)
        except ConfigError as e:
            raise ConfigError(f"latency coefficients {path}: {e.message}") from e


def _values(c: Coefficients) -> tuple[float, float, float]:
    return (c.a, c.b, c.c)


def _coefficients(path: str | Path, data: dict[str, Any], part: str) -> Coefficients:
    value = data.get(part)
    if not isinstance(value, dict) or set(value) != {"a", "b", "c"}:
        raise ConfigError(f"latency coefficients {path}: \"{part}\" must be an object with keys a, b, c")
    if not all(isinstance(value[k], (int, float)) and not isinstance(value[k], bool) for k in "abc"):
        raise ConfigError(f"latency coefficients {path}: \"{part}\" a, b, c must be numbers, got {value}")
    return Coefficients(float(value["a"]), float(value["b"]), float(value["c"]))


def _write_json(path: str | Path, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


# ---- fitting -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitQuality:
    """How well one part predicts the rows it was fitted on: R^2 of seconds, and the largest
    |predicted - measured| / measured."""

    rows: int
    r2: float
    max_rel_error: float


@dataclass(frozen=True)
class FitResult:
    model: DistServeModel
    prefill: FitQuality
    decode: FitQuality

    def to_json(self) -> dict[str, Any]:
        return {**self.model.to_json(), "fit": {"prefill": asdict(self.prefill), "decode": asdict(self.decode)}}

    def save(self, path: str | Path) -> None:
        """The coefficients file, with the fit quality under "fit"."""
        _write_json(path, self.to_json())


def _features(row: ProfileRow) -> tuple[float, float]:
    if row.kind == "prefill":
        return (row.prefill_tokens, row.prefill_attn)
    return (row.decode_context, row.decode_batch)


def _nonnegative_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """min ||x w - y|| over w >= 0, for a few columns: the least-squares solution of the best support
    whose solution is non-negative (the unconstrained solution when it already is)."""
    n = x.shape[1]
    best, best_res = np.zeros(n), float(np.sum(y * y))
    for k in range(n, 0, -1):
        for support in itertools.combinations(range(n), k):
            cols = list(support)
            w, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
            if np.all(w >= 0):
                res = float(np.sum((x[:, cols] @ w - y) ** 2))
                if res < best_res:
                    best = np.zeros(n)
                    best[cols] = w
                    best_res = res
    return best


def _fit_part(part: str, rows: Sequence[ProfileRow]) -> Coefficients:
    """Coefficients minimising the squared relative error over the rows, non-negative.

    Repeats (rows of one shape) are reduced to their median first, so one slow repeat does not
    pull the fit; relative error weighs a 2 ms step as much as a 200 ms one.
    """
    groups: dict[tuple[float, float], list[float]] = defaultdict(list)
    for row in rows:
        groups[_features(row)].append(row.seconds)
    if len(groups) < 3:
        raise ValueError(f"fitting the {part} part needs rows of at least 3 distinct shapes, got {len(groups)}")
    feats = np.array([(1.0, *f) for f in groups], dtype=np.float64)
    y = np.array([statistics.median(v) for v in groups.values()], dtype=np.float64)
    if np.linalg.matrix_rank(feats) < 3:
        raise ValueError(f"the {part} rows do not determine 3 coefficients (their shapes are collinear)")
    # each row divided by its measured time: least squares on relative errors; features scaled to
    # unit columns so the solve is well conditioned (context sums and token products reach 1e6)
    scale = np.abs(feats).max(axis=0)
    w = _nonnegative_lstsq(feats / scale / y[:, None], np.ones_like(y)) / scale
    return Coefficients(float(w[0]), float(w[1]), float(w[2]))


def _quality(model: DistServeModel, rows: Sequence[ProfileRow]) -> FitQuality:
    measured = np.array([r.seconds for r in rows])
    predicted = np.array([model.step_time(r.shape) for r in rows])
    ss_res = float(np.sum((predicted - measured) ** 2))
    ss_tot = float(np.sum((measured - measured.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return FitQuality(len(rows), r2, float(np.max(np.abs(predicted - measured) / measured)))


def fit(rows: Iterable[ProfileRow], source: str = "") -> FitResult:
    """Fit both parts from prefill-only and decode-only profile rows (least squares, see `_fit_part`).

    ValueError when a part has fewer than 3 distinct shapes or its shapes cannot separate the three
    coefficients.
    """
    by_kind: dict[str, list[ProfileRow]] = {k: [] for k in PARTS}
    for row in rows:
        if row.kind not in by_kind:
            raise ValueError(f"profile row kind must be one of {PARTS}, got {row.kind!r}")
        by_kind[row.kind].append(row)
    model = DistServeModel(_fit_part("prefill", by_kind["prefill"]), _fit_part("decode", by_kind["decode"]),
                           source)
    return FitResult(model, _quality(model, by_kind["prefill"]), _quality(model, by_kind["decode"]))
