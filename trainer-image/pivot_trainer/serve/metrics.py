"""The server's Prometheus metrics, in a registry of its own (GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

OUTCOMES = ("ok", "invalid", "too_large", "unsupported", "unavailable", "error")
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServeMetrics:
    def __init__(self, model: str, checkpoint_id: str, sha256: str) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "pivot_serve_requests",
            "Predict requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:  # every series exists from the start, at zero
            self.requests.labels(outcome)
        self.latency = Histogram(
            "pivot_serve_request_duration_seconds",
            "Predict request latency, body read to response",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "pivot_serve_images", "Images the model ran on", registry=self.registry
        )
        self.batch_size = Histogram(
            "pivot_serve_batch_size",
            "Images per model run",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "pivot_serve_inference_duration_seconds",
            "Model run time per batch, candidates included",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "pivot_serve_queue_depth",
            "Images waiting for a batch",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "pivot_serve_requests_in_flight",
            "Predict requests being handled",
            registry=self.registry,
        )
        self.ready = Gauge(
            "pivot_serve_ready", "1 when the model serves, else 0", registry=self.registry
        )
        info = Gauge(
            "pivot_serve_model_info",
            "The model served",
            ["model", "checkpoint_id", "sha256"],
            registry=self.registry,
        )
        info.labels(model, checkpoint_id, sha256).set(1)
