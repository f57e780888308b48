"""Cost of one scheduling decision, per profile, at 16, 64 and 256 instances.

    python -m benchmarks.scheduling_overhead [--sizes 16,64,256] [--decisions 200] [--repeats 25] \\
        [--out results/scheduling_overhead.json]

For each size, seeded random views of healthy instances (loads, free blocks and pending dispatches
drawn per instance) are passed in shuffled order, so every decision pays for a real sort. Each
profile (the config's `default` and the baseline policies of `controlplane.scheduling.policies`)
gets a fresh framework and makes `--decisions` decisions in a loop over `SchedulingFramework.schedule`;
its cost is the best of `--repeats` such loops in microseconds per decision (timeit's convention:
the least disturbed run; short loops and many repeats keep it steady on a shared machine). The baseline, measured the same way in the same run, is the cost of merely
sorting the views by instance id, which every decision starts with: the rest of a row is what
filtering, scoring and picking add. The simulator makes one decision per request, so 100,000
requests over 256 instances at 100 us cost 10 s of its 60 s budget.
Prints a Markdown table and writes the JSON results to `--out`. Exit status 0, or 2 for a bad flag.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import NoReturn

from controlplane.config import FlotillaConfig
from controlplane.scheduling.policies import BASELINE_POLICIES
from controlplane.scheduling.registry import ProfileConfig, build_framework
from controlplane.scheduling.types import InstanceView, RequestView

BASELINE = "sort only (baseline)"
TARGET_US = 100.0  # the default profile at 256 instances
REQ = RequestView(request_id="bench", num_prompt_tokens=512, max_tokens=128)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"scheduling_overhead: error: {message}\n")


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = _Parser(prog="python -m benchmarks.scheduling_overhead", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=_positive_ints, default=(16, 64, 256), help="instance counts")
    p.add_argument("--decisions", type=int, default=200, help="decisions per timed loop")
    p.add_argument("--repeats", type=int, default=25, help="timed loops per cell (the best counts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/scheduling_overhead.json"))
    args = p.parse_args(argv)
    if args.decisions < 1 or args.repeats < 1:
        p.error("--decisions and --repeats must be >= 1")
    return args


def make_views(n: int, seed: int) -> list[InstanceView]:
    """`n` healthy 2048-block instances with seeded random state, in shuffled order."""
    rng = random.Random(seed)
    views = []
    for i in range(n):
        running, waiting = rng.randint(0, 32), rng.randint(0, 8)
        views.append(
            InstanceView(
                instance_id=f"instance-{i:04d}",
                healthy=True,
                running=running,
                waiting=waiting,
                free_blocks=rng.randint(0, 2048),
                total_blocks=2048,
                block_size=16,
                tokens_in_flight=(running + waiting) * rng.randint(100, 1500),
                queued_prompt_tokens=waiting * rng.randint(50, 1000),
                pending_requests=rng.randint(0, 2),
                pending_tokens=rng.choice((0, rng.randint(1, 1200))),
            )
        )
    rng.shuffle(views)
    return views


def profiles() -> dict[str, ProfileConfig]:
    """The default serving profile and the baseline policies."""
    return {"default": FlotillaConfig().scheduling.profiles["default"], **BASELINE_POLICIES}


def best_us_per_call(call: Callable[[], object], calls: int, repeats: int) -> float:
    """Microseconds per call of `call`: the fastest of `repeats` loops of `calls` calls."""
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, time.perf_counter() - began)
    return best / calls * 1e6


def measure(sizes: Sequence[int], decisions: int, repeats: int, seed: int) -> dict[str, dict[int, float]]:
    """Row name -> instance count -> microseconds per decision (the sort baseline first)."""
    specs = profiles()
    table: dict[str, dict[int, float]] = {BASELINE: {}, **{name: {} for name in specs}}
    by_id = attrgetter("instance_id")
    for n in sizes:
        views = make_views(n, seed)
        table[BASELINE][n] = best_us_per_call(partial(sorted, views, key=by_id), decisions, repeats)
        for name, spec in specs.items():
            fw, rng = build_framework({name: spec}), random.Random(seed)
            table[name][n] = best_us_per_call(partial(fw.schedule, name, REQ, views, rng), decisions, repeats)
    return table


def format_table(table: dict[str, dict[int, float]], sizes: Sequence[int]) -> str:
    """Markdown: one row per profile, microseconds per decision per instance count."""
    lines = [
        "| profile | " + " | ".join(f"{n} inst. (us)" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[n]:.1f}" for n in sizes) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    table = measure(args.sizes, args.decisions, args.repeats, args.seed)
    print(format_table(table, args.sizes))
    largest = max(args.sizes)
    default_us = table["default"][largest]
    if largest == 256:
        verdict = "met" if default_us <= TARGET_US else "NOT met"
        print(
            f"\ndefault profile at 256 instances: {default_us:.1f} us per decision (target {TARGET_US:g} us: {verdict})"
        )
    payload = {
        "benchmark": "scheduling_overhead",
        "unit": "microseconds per decision (best of repeats)",
        "settings": {
            "sizes": list(args.sizes),
            "decisions": args.decisions,
            "repeats": args.repeats,
            "seed": args.seed,
        },
        "python": platform.python_version(),
        "machine": platform.machine(),
        "baseline": BASELINE,
        "results": {name: {str(n): round(us, 2) for n, us in row.items()} for name, row in table.items()},
        "wall_s": round(time.perf_counter() - began, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({payload['wall_s']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
