"""Every benchmark target, in one place, and the verdict of a run against them.

A bench records its numbers with `Results.record(measure, statistic, value, size=...)`; at the
end `Results.finish()` prints a verdict table (target, measured, met/missed) for that bench's
targets and, with `--check`, exits 1 when one was missed. `--json PATH` writes every recorded
number. bench/README.md's "Targets" table is this list (`python bench/_targets.py` prints it;
tests/unit/bench/test_targets.py fails when the two differ).

A target with a `size` applies only to runs at least that big (e.g. 200 clients, 1,000,000
points): the target was stated at that size, and a smoke run at a tiny size proves nothing
about it; such rows read "n/a" with the run's size. A target whose measure the run did not
record (a part left out with --only, the MLflow rows with --skip-mlflow) reads "not run".
Neither counts as missed.
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Op = Literal["<", "<=", ">", ">="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_SHOWN = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}


@dataclass(frozen=True)
class Target:
    bench: str  # the script's stem: bench_api, bench_trainer, ...
    measure: str  # as the bench records it
    statistic: str  # p50, p99, median, max, value, ...
    op: Op
    limit: float
    unit: str
    source: str  # where the target was stated
    size: int | None = None  # applies to runs at least this big ...
    size_unit: str = ""  # ... counted in these (clients, points, CRs, ...)

    def met(self, value: float) -> bool:
        return _OPS[self.op](value, self.limit)

    @property
    def goal(self) -> str:
        return f"{_SHOWN[self.op]} {self.limit:g} {self.unit}".rstrip()

    @property
    def applies_at(self) -> str:
        return f"≥ {self.size:,} {self.size_unit}" if self.size else "any size"

    def cells(self) -> list[str]:
        """The target's row in bench/README.md's Targets table."""
        return [
            self.bench,
            self.measure,
            self.statistic,
            self.goal,
            self.applies_at,
            self.source,
        ]


README_HEADER = ["bench", "measure", "statistic", "target", "applies at", "source"]

API = "issue 5"
TRAINER = "issue 4"

TARGETS: tuple[Target, ...] = (
    # -- API -------------------------------------------------------------------------------
    Target("bench_api", "GET session, closed loop", "p99", "<", 20, "ms", API, 200, "clients"),
    Target("bench_api", "history, warm", "p99", "<", 100, "ms", API, 1_000_000, "points"),
    Target(
        "bench_api",
        "history, first read of a fresh API process",
        "p99",
        "<",
        100,
        "ms",
        "issue 17",
        1_000_000,
        "points",
    ),
    Target(
        "bench_api",
        "history warm vs MLflow bulk-interval warm",
        "speed-up at the median",
        ">=",
        20,
        "x",
        API,
        1_000_000,
        "points",
    ),
    Target(
        "bench_api",
        "history first read vs MLflow bulk-interval first request",
        "speed-up at the median",
        ">=",
        20,
        "x",
        "issue 17",
        1_000_000,
        "points",
    ),
    Target(
        "bench_api",
        "history rollups memory vs the stream's",
        "ratio",
        "<=",
        10,
        "%",
        "issue 17",
        200_000,
        "points",
    ),
    Target("bench_api", "SSE XADD -> client", "p99", "<", 100, "ms", API, 500, "clients"),
    # -- API CPU. Where no target was stated, a regression guard: about 2x the figure the
    # README recorded (5x for the skeleton's pod start, which is mostly process spawning).
    Target(
        "bench_api_cpu",
        "server CPU per GET session, 1 in flight",
        "median",
        "<=",
        250,
        "µs",
        "guard, none stated (README 2026-12-04: 95-118 µs)",
    ),
    Target(
        "bench_api_cpu",
        "server CPU per GET session, 200 in flight",
        "median",
        "<=",
        50,
        "µs",
        "guard, none stated (README 2026-12-04: 21.8-24.4 µs)",
    ),
    # -- operator ----------------------------------------------------------------------------
    Target("bench_operator", "CR create -> pod created", "p50", "<", 50, "ms", "issue 3"),
    Target("bench_operator", "CR create -> pod created", "p99", "<", 200, "ms", "issue 3"),
    Target(
        "bench_operator",
        "CRs posted at once -> every pod created",
        "value",
        "<",
        30,
        "s",
        "issue 3",
        1000,
        "CRs",
    ),
    Target(
        "bench_operator",
        "operator RSS, every session alive",
        "max",
        "<",
        200,
        "MB",
        "issue 3",
        1000,
        "sessions",
    ),
    # -- API keys and rate limits (guards) ----------------------------------------------
    Target(
        "bench_security",
        "keys: p50 over off",
        "difference",
        "<",
        0.1,
        "ms",
        "guard, none stated (README 2026-11-26: +0.016 ms)",
    ),
    Target(
        "bench_security",
        "keys+limits: p50 over off",
        "difference",
        "<",
        2,
        "ms",
        "guard, none stated (README 2026-11-26: +0.947 ms)",
    ),
    # -- walking skeleton ----------------------------------------------------------------
    Target(
        "bench_skeleton",
        "`pivot up --demo` -> session completed",
        "value",
        "<",
        180,
        "s",
        "issue 2 (the demo in under 3 minutes)",
    ),
    Target(
        "bench_skeleton",
        "CR create -> pod Running",
        "median",
        "<",
        200,
        "ms",
        "guard, none stated (README 2026-11-25: 41 ms)",
    ),
    # -- trainer -------------------------------------------------------------------------
    Target(
        "bench_trainer",
        "(a) hooks' overhead, demo config, trainer process CPU",
        "95% CI upper bound of the median pair",
        "<",
        1,
        "%",
        TRAINER,
        6,  # fewer pairs have no 95% interval from order statistics
        "pairs",
    ),
    Target(
        "bench_trainer",
        "(b) loop blocked by a checkpoint vs synchronous save + upload",
        "median ratio",
        "<",
        10,
        "%",
        TRAINER,
    ),
    Target(
        "bench_trainer",
        "(c) checkpoint upload vs boto3 upload_fileobj, both from memory",
        "median ratio",
        ">=",
        90,
        "%",
        TRAINER,
        128,
        "MiB",
    ),
    Target(
        "bench_trainer",
        "(d) metric ingest vs MLflow log-batch, same points",
        "median pair ratio",
        ">=",
        50,
        "x",
        TRAINER,
        100_000,
        "points",
    ),
    # -- webhooks (guards) ----------------------------------------------------------------
    Target(
        "bench_webhooks",
        "latency publish -> receiver, one at a time",
        "p99",
        "<",
        100,
        "ms",
        "guard, none stated (README 2026-11-26: 28.5-29.6 ms)",
    ),
    Target(
        "bench_webhooks",
        "events to 10 endpoints",
        "deliveries/s",
        ">=",
        50,
        "",
        "guard, none stated (README 2026-11-26: 105-334)",
        2000,
        "deliveries",
    ),
    # -- the dashboard, in Chromium (issue 18)
    Target(
        "bench_ui",
        "sessions page, cold load -> interactive",
        "median",
        "<",
        1000,
        "ms",
        "issue 18",
        1000,
        "sessions",
    ),
    Target(
        "bench_ui",
        "session page, cold load -> step chart drawn",
        "median",
        "<",
        500,
        "ms",
        "issue 18",
        1_000_000,
        "points",
    ),
    Target(
        "bench_ui",
        "step chart zoom -> re-fetched and drawn",
        "median",
        "<",
        200,
        "ms",
        "issue 18",
        1_000_000,
        "points",
    ),
    Target(
        "bench_ui",
        "session page vs MLflow run page, cold load -> chart drawn",
        "speed-up at the median",
        ">=",
        10,
        "x",
        "issue 18",
        1_000_000,
        "points",
    ),
    Target(
        "bench_ui", "live XADD -> point drawn", "p95", "<", 300, "ms", "issue 18", 50, "dashboards"
    ),
    # -- GPU (issue 15): recorded only on CUDA; the CPU smoke (--device cpu) records other names
    Target("bench_gpu", "input pipeline cost, device", "median", "<", 5, "%", "issue 15"),
    Target(
        "bench_gpu", "run/resume tests on the device, failed", "count", "<", 1, "", "issue 15"
    ),
    Target(
        "bench_gpu", "GPU check, wall time", "value", "<", 480, "s", "issue 15 (under 8 minutes)"
    ),
)


def targets_of(bench: str) -> list[Target]:
    return [t for t in TARGETS if t.bench == bench]


def add_check_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a target (bench/_targets.py) is missed"
    )
    parser.add_argument("--json", type=Path, help="write every recorded number here")


@dataclass
class Recorded:
    value: float
    size: int | None


class Results:
    """The numbers one bench run recorded, by (measure, statistic)."""

    def __init__(self, bench: str) -> None:
        self.bench = bench
        self.values: dict[tuple[str, str], Recorded] = {}

    def record(
        self, measure: str, statistic: str, value: float, *, size: int | None = None
    ) -> None:
        self.values[(measure, statistic)] = Recorded(float(value), size)

    def verdicts(self) -> list[tuple[Target, str, bool | None]]:
        """(target, measured, met: True/False, None when it does not apply to this run)."""
        out: list[tuple[Target, str, bool | None]] = []
        for t in targets_of(self.bench):
            got = self.values.get((t.measure, t.statistic))
            if got is None:
                out.append((t, "not run", None))
            elif t.size and (got.size or 0) < t.size:
                out.append((t, f"{got.value:.4g} (n/a: {got.size:,} {t.size_unit})", None))
            else:
                out.append((t, f"{got.value:.4g} {t.unit}".rstrip(), t.met(got.value)))
        return out

    def finish(self, args: argparse.Namespace) -> None:
        """Print the verdict table; with --check, exit 1 if a target was missed."""
        if args.json:
            rows = [
                {"measure": m, "statistic": s, "value": r.value, "size": r.size}
                for (m, s), r in self.values.items()
            ]
            args.json.write_text(json.dumps({"bench": self.bench, "results": rows}, indent=1))
        verdicts = self.verdicts()
        print(f"\nTargets of {self.bench} (bench/_targets.py):\n")
        print("| target | measured | verdict |\n|---|---|---|")
        for t, measured, met in verdicts:
            shown = "n/a" if met is None else ("met" if met else "**missed**")
            print(f"| {t.measure}, {t.statistic} {t.goal} | {measured} | {shown} |")
        missed = [t for t, _, met in verdicts if met is False]
        if missed:
            names = "; ".join(f"{t.measure} ({t.statistic} {t.goal})" for t in missed)
            print(f"\n{len(missed)} target(s) missed: {names}", file=sys.stderr)
            if args.check:
                sys.exit(1)


def readme_table() -> str:
    lines = ["| " + " | ".join(README_HEADER) + " |", "|" + "---|" * len(README_HEADER)]
    lines += ["| " + " | ".join(t.cells()) + " |" for t in TARGETS]
    return "\n".join(lines)


if __name__ == "__main__":
    print(readme_table())
