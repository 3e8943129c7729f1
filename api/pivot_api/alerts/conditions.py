"""What an alert rule means, as pure functions: which metrics are the host's, and whether a
condition holds for the values observed. No Redis, no Kubernetes: the evaluator gathers the
values, these decide."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pivot_schema.config import METRICS as TRAINING_METRICS

# Metrics of the host the API runs on (psutil, NVML). A GPU metric on a rule scoped to a
# session or tag is read from that session's own GPU telemetry instead.
HOST_METRICS = frozenset({"cpu_percent", "memory_percent", "disk_percent"})
GPU_METRICS = frozenset({"gpu_utilization", "gpu_memory_percent", "gpu_temperature"})
SYSTEM_METRICS = HOST_METRICS | GPU_METRICS
# Every metric a rule may watch: the host's and those the trainer writes (pivot_schema.config).
# A rule on any other name could never fire, so it is refused.
KNOWN_METRICS: tuple[str, ...] = (
    *sorted(HOST_METRICS),
    *sorted(GPU_METRICS),
    *TRAINING_METRICS,
)

COMPARISONS = ("greater_than", "less_than", "equals", "not_equals")
# Conditions that need a training metric's history, not one value.
HISTORY_CONDITIONS = ("no_improvement_for", "stalled")
CONDITIONS = (*COMPARISONS, "is_nan", *HISTORY_CONDITIONS)

Mode = Literal["min", "max"]

_WORDS = {
    "greater_than": "above",
    "less_than": "below",
    "equals": "equal to",
    "not_equals": "not equal to",
}


@dataclass(frozen=True)
class Verdict:
    triggered: bool
    # What the alert reports as its value: the metric, the epochs without improvement, or
    # the seconds without a metric; None when there is no number (NaN, no data).
    value: float | None
    message: str


def check_metric(metric: str) -> str:
    """`metric`, or ValueError listing the metrics a rule may watch."""
    if metric not in KNOWN_METRICS:
        raise ValueError(f"unknown metric {metric!r}: a rule can watch {', '.join(KNOWN_METRICS)}")
    return metric


def not_finite(value: float | None) -> bool:
    """NaN or infinite. The trainer's records turn both into null (JSON has no NaN), so a
    metric present with a null value counts too."""
    return value is None or not math.isfinite(value)


def compare(condition: str, value: float, threshold: float) -> bool:
    if condition == "greater_than":
        return value > threshold
    if condition == "less_than":
        return value < threshold
    # Metrics are floats that went through JSON: equal means equal to rounding.
    same = math.isclose(value, threshold, rel_tol=1e-9, abs_tol=1e-12)
    if condition == "equals":
        return same
    if condition == "not_equals":
        return not same
    raise ValueError(f"not a comparison: {condition}")


def check_comparison(
    condition: str, metric: str, value: float | None, threshold: float, subject: str
) -> Verdict:
    if not_finite(value):
        # No number to compare (no data yet, or NaN): is_nan is the rule for that.
        return Verdict(False, None, f"{metric}{_of(subject)} has no value")
    assert value is not None
    hit = compare(condition, value, threshold)
    return Verdict(
        hit,
        value,
        f"{metric}{_of(subject)} {_WORDS[condition]} {threshold:g} ({value:g})",
    )


def check_is_nan(metric: str, present: bool, value: float | None, subject: str) -> Verdict:
    """`present`: the latest record carries the metric at all (a metric never logged is
    missing, not NaN)."""
    if present and not_finite(value):
        return Verdict(True, None, f"{metric}{_of(subject)} is NaN or infinite")
    return Verdict(False, value, f"{metric}{_of(subject)} is finite")


def epochs_without_improvement(
    values: Sequence[float | None], *, mode: Mode, min_delta: float = 0.0
) -> int | None:
    """How many records came after the best one (the best counted first-come: a later equal
    value is no improvement). None when there is no finite value at all. An improvement must
    beat the best so far by more than `min_delta`."""
    best: float | None = None
    since = 0
    for value in values:
        if not_finite(value):
            since += 1 if best is not None else 0
            continue
        assert value is not None
        better = best is None or (
            value < best - min_delta if mode == "min" else value > best + min_delta
        )
        if better:
            best, since = value, 0
        else:
            since += 1
    return None if best is None else since


def check_no_improvement(
    metric: str,
    values: Sequence[float | None],
    *,
    epochs: int,
    mode: Mode,
    min_delta: float,
    subject: str,
) -> Verdict:
    since = epochs_without_improvement(values, mode=mode, min_delta=min_delta)
    if since is None:
        return Verdict(False, None, f"{metric}{_of(subject)} has no value")
    word = "decreased" if mode == "min" else "increased"
    return Verdict(
        since >= epochs,
        float(since),
        f"{metric}{_of(subject)} has not {word} for {since} epoch(s) (limit {epochs})",
    )


def check_stalled(metric: str, idle_s: float, window_s: float, subject: str) -> Verdict:
    """`idle_s`: seconds since the last record carrying the metric (or since the session
    was first seen running, when it has none)."""
    idle = round(idle_s, 1)
    return Verdict(
        idle_s > window_s,
        idle,
        f"no {metric}{_of(subject)} for {idle:g}s (limit {window_s:g}s)",
    )


def gpu_value(metric: str, gpus: Sequence[dict[str, float | None]]) -> float | None:
    """The worst device's value of a GPU metric (the hottest, the busiest, the fullest):
    an alert on a node is about the device that crosses the line. `gpus` hold the keys
    utilization, memory_percent, temperature."""
    field = {
        "gpu_utilization": "utilization",
        "gpu_memory_percent": "memory_percent",
        "gpu_temperature": "temperature",
    }[metric]
    found = [v for g in gpus if (v := g.get(field)) is not None and math.isfinite(v)]
    return max(found) if found else None


def _of(subject: str) -> str:
    return "" if subject == "system" else f" of {subject}"
