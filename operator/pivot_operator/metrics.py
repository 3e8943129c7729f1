"""Prometheus metrics of the operator (served on PIVOT_METRICS_PORT when set)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RECONCILES = Counter(
    "pivot_operator_reconciles_total",
    "Session reconciliations, by what triggered them",
    ["trigger"],
)
ERRORS = Counter(
    "pivot_operator_reconcile_errors_total", "Reconciliations that raised", ["trigger"]
)
LATENCY = Histogram(
    "pivot_operator_reconcile_seconds",
    "Time to reconcile one session to a fixed point",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PODS_CREATED = Counter("pivot_operator_pods_created_total", "Trainer pods created")
ATTEMPTS_FAILED = Counter(
    "pivot_operator_attempts_failed_total", "Failed attempts, by reason", ["reason"]
)
PREEMPTIONS = Counter("pivot_operator_preemptions_total", "Attempts preempted or evicted")


def serve(port: int) -> None:
    if port:
        start_http_server(port)
