"""What the OpenAPI document says beyond what FastAPI derives from the routes:
`install_openapi(app, settings, public_paths)`.

- examples: the reference's request and response bodies (ids and fields as this API has
  them), on the operations the reference documents;
- the refusals that middleware gives before any route runs: 401 and 403 (API keys, when
  they are on) and 429 (rate limits, when they are on), with the error envelope, on every
  operation that can answer them;
- the live streams' message schemas (components LiveMetricsEvent, LiveMetricsMessage,
  LiveStatusEvent), which no route returns as JSON, so FastAPI would not list them.

tests/unit/api/test_api_openapi_doc.py checks every example against its own schema.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from pivot_api.auth import KeyScope, required_scope
from pivot_api.live.schemas import LIVE_MODELS
from pivot_api.settings import Settings

_SESSION = "sess-abc123"
_CONFIG = {"epochs": 100, "batch_size": 2, "learning_rate": 0.001}
_TAGS = ["unet", "focal-loss"]
_CHECKPOINT = {
    "checkpoint_id": f"ckpt_{_SESSION}_e00050",
    "session_id": _SESSION,
    "epoch": 50,
    "metric_value": 0.856,
    "metric_name": "val_froc",
    "file_size_mb": 245.3,
    "file_path": f"s3://pivot/checkpoints/{_SESSION}/ckpt_{_SESSION}_e00050/model.pth",
    "created_at": "2025-12-19T11:00:00Z",
    "is_best": True,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "step": 0,
}
_ALERT = {
    "alert_id": "alert_001",
    "rule_name": "high_cpu_usage",
    "severity": "high",
    "message": "CPU usage above 90%",
    "value": 94.5,
    "threshold": 90.0,
    "triggered_at": "2025-12-19T10:28:00Z",
    "status": "active",
    "rule_id": "rule_001",
    "metric": "cpu_percent",
    "condition": "greater_than",
    "subject": "system",
}
_RULE = {
    "name": "high_memory_usage",
    "metric": "memory_percent",
    "condition": "greater_than",
    "threshold": 85.0,
    "severity": "high",
    "enabled": True,
}
_WEBHOOK = {
    "webhook_id": "webhook_001",
    "url": "https://example.com/webhook",
    "events": ["training_completed", "alert_triggered"],
    "created_at": "2025-12-19T10:30:00Z",
    "status": "active",
}
_NOTIFICATION = {
    "id": "notif_001",
    "type": "training",
    "priority": "high",
    "message": f"Training session {_SESSION} completed",
    "data": {"session_id": _SESSION, "final_metrics": {"val_froc": 0.856}},
    "read": False,
    "created_at": "2025-12-19T12:00:00Z",
}


def _record(epoch: int, values: tuple[float, ...], at: str) -> dict[str, Any]:
    names = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")
    return {"epoch": epoch, "timestamp": at, **dict(zip(names, values, strict=True))}


# (method, path after the API prefix) -> {"request": body, <status>: body}: the reference's
# examples, with ids in this API's formats and the fields this API adds.
EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/training/sessions"): {
        "request": {
            "config_path": "configs/train.yaml",
            "session_name": "experiment_001",
            "tags": _TAGS,
        },
        "201": {
            "session_id": _SESSION,
            "status": "created",
            "created_at": "2025-12-19T10:30:00Z",
            "config": _CONFIG,
        },
    },
    ("post", "/training/sessions/{session_id}/start"): {
        "200": {"session_id": _SESSION, "status": "running", "started_at": "2025-12-19T10:30:05Z"}
    },
    ("post", "/training/sessions/{session_id}/stop"): {
        "200": {"session_id": _SESSION, "status": "stopped", "stopped_at": "2025-12-19T10:45:00Z"}
    },
    ("get", "/training/sessions/{session_id}"): {
        "200": {
            "session_id": _SESSION,
            "session_name": "experiment_001",
            "status": "running",
            "config": _CONFIG,
            "tags": _TAGS,
            "created_at": "2025-12-19T10:30:00Z",
            "started_at": "2025-12-19T10:30:05Z",
            "current_epoch": 25,
            "total_epochs": 100,
            "progress": 0.25,
            "latest_metrics": {"train_loss": 0.245, "val_loss": 0.289, "learning_rate": 0.000853},
        }
    },
    ("get", "/training/sessions"): {
        "200": {
            "sessions": [
                {
                    "session_id": _SESSION,
                    "session_name": "experiment_001",
                    "status": "running",
                    "created_at": "2025-12-19T10:30:00Z",
                    "current_epoch": 25,
                    "total_epochs": 100,
                    "tags": _TAGS,
                }
            ],
            "total": 1,
            "limit": 50,
            "offset": 0,
        }
    },
    ("get", "/training/sessions/{session_id}/metrics"): {
        "200": {
            "session_id": _SESSION,
            "metrics": [
                _record(1, (0.856, 0.912, 0.634, 0.598, 0.001), "2025-12-19T10:31:00Z"),
                _record(2, (0.734, 0.801, 0.701, 0.667, 0.00095), "2025-12-19T10:32:00Z"),
            ],
        }
    },
    ("get", "/metrics/{session_id}/history"): {
        "200": {
            "metric_name": "val_loss",
            "values": [0.912, 0.801, 0.723, 0.656],
            "epochs": [1, 2, 3, 4],
            "timestamps": [
                "2025-12-19T10:31:00Z",
                "2025-12-19T10:32:00Z",
                "2025-12-19T10:33:00Z",
                "2025-12-19T10:34:00Z",
            ],
            "total_points": 4,
            "downsampled": False,
        }
    },
    ("get", "/checkpoints"): {"200": {"checkpoints": [_CHECKPOINT]}},
    ("post", "/checkpoints"): {
        "201": {
            "checkpoint_id": f"ckpt_{_SESSION}_e00051u3fa2b1c0",
            "file_size_mb": 245.3,
            "uploaded_at": "2025-12-19T11:05:00Z",
        }
    },
    ("delete", "/checkpoints/{checkpoint_id}"): {
        "200": {"message": "Checkpoint deleted successfully"}
    },
    ("get", "/monitor/resources"): {
        "200": {
            "timestamp": "2025-12-19T10:30:00Z",
            "cpu": {"percent": 45.2, "count": 4, "per_cpu": [42.1, 48.3, 43.5, 46.9]},
            "memory": {"percent": 62.8, "used_gb": 50.2, "total_gb": 80.0},
            "disk": {"percent": 38.5, "used_gb": 385.0, "total_gb": 1000.0},
            "gpu": [
                {
                    "id": 0,
                    "name": "NVIDIA RTX 4090",
                    "memory_percent": 75.2,
                    "memory_used_gb": 18.0,
                    "memory_total_gb": 24.0,
                    "utilization": 92.5,
                    "temperature": 68.0,
                }
            ],
            "sessions": [],
        }
    },
    ("get", "/health"): {
        "200": {
            "status": "healthy",
            "timestamp": "2025-12-19T10:30:00Z",
            "uptime_seconds": 3600.5,
            "system": {"cpu_percent": 45.2, "memory_percent": 62.8, "disk_percent": 38.5},
            "components": {
                "database": "healthy",
                "filesystem": "healthy",
                "kubernetes": "healthy",
                "operator": "healthy",
                "kubelet": "healthy",
            },
        }
    },
    ("get", "/alerts"): {"200": {"alerts": [_ALERT]}},
    ("post", "/alerts/{alert_id}/acknowledge"): {
        "request": {"acknowledged_by": "user@example.com", "notes": "Investigating high CPU usage"},
        "200": {
            **_ALERT,
            "status": "acknowledged",
            "acknowledged_at": "2025-12-19T10:29:00Z",
            "acknowledged_by": "user@example.com",
            "notes": "Investigating high CPU usage",
        },
    },
    ("post", "/alerts/rules"): {
        "request": _RULE,
        "201": {
            "rule_id": "rule_002",
            **_RULE,
            "for_epochs": 5,
            "mode": "min",
            "window_s": 300.0,
            "created_at": "2025-12-19T10:30:00Z",
            "updated_at": "2025-12-19T10:30:00Z",
        },
    },
    ("post", "/webhooks"): {
        "request": {
            "url": "https://example.com/webhook",
            "events": ["training_completed", "alert_triggered"],
            "secret": "your_webhook_secret",
        },
        "201": _WEBHOOK,
    },
    ("post", "/webhooks/{webhook_id}/test"): {
        "200": {"success": True, "status_code": 200, "response_time_ms": 145}
    },
    ("get", "/notifications"): {"200": {"notifications": [_NOTIFICATION], "unread_count": 1}},
    ("post", "/notifications/{notification_id}/read"): {"200": {**_NOTIFICATION, "read": True}},
    ("delete", "/notifications"): {"200": {"message": "cleared 1 notification(s)"}},
}


def _envelope(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


_ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}
_UNAUTHORIZED = {
    "description": "No API key, or an unknown one (`WWW-Authenticate: Bearer`). Send "
    "`Authorization: Bearer <key>` or `X-API-Key: <key>`; GET and WebSocket requests may "
    "pass `?access_token=<key>` instead.",
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    "content": {
        "application/json": {
            "schema": _ERROR_SCHEMA,
            "example": _envelope(
                "UNAUTHORIZED",
                "an API key is required",
                {"hint": "send Authorization: Bearer <key> or X-API-Key: <key>"},
            ),
        }
    },
}


def _forbidden(needed: KeyScope) -> dict[str, Any]:
    return {
        "description": f"The API key's scope is too small: this needs {needed.label}.",
        "content": {
            "application/json": {
                "schema": _ERROR_SCHEMA,
                "example": _envelope(
                    "FORBIDDEN",
                    f"API key 'viewer' has scope read; this needs {needed.label}",
                    {"scope": "read", "required_scope": needed.label},
                ),
            }
        },
    }


_INT = {"schema": {"type": "integer"}}
_RATE_LIMITED = {
    "description": "Too many requests from this client address; retry after `Retry-After` seconds.",
    "headers": {
        "Retry-After": {**_INT, "description": "Seconds until a request is accepted again."},
        "X-RateLimit-Limit": {**_INT, "description": "The limit closest to running out."},
        "X-RateLimit-Remaining": {**_INT, "description": "Requests left in its window."},
        "X-RateLimit-Reset": {**_INT, "description": "Unix time its window has room again."},
    },
    "content": {
        "application/json": {
            "schema": _ERROR_SCHEMA,
            "example": _envelope(
                "RATE_LIMITED",
                "rate limit of 100 requests exceeded; retry in 12 s",
                {"limit": 100, "retry_after_s": 12},
            ),
        }
    },
}


def _add_examples(operation: dict[str, Any], examples: dict[str, Any]) -> None:
    for key, value in examples.items():
        if key == "request":
            media = operation.get("requestBody", {}).get("content", {}).get("application/json")
        else:
            media = (
                operation.get("responses", {})
                .get(key, {})
                .get("content", {})
                .get("application/json")
            )
        if media is None:
            raise KeyError(f"{operation.get('operationId')}: no JSON body for example {key!r}")
        media["example"] = copy.deepcopy(value)


def _add_live_schemas(doc: dict[str, Any]) -> None:
    _, top = models_json_schema(
        [(model, "serialization") for model in LIVE_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in top.get("$defs", {}).items():
        schemas.setdefault(name, schema)


def document(doc: dict[str, Any], settings: Settings, public_paths: frozenset[str]) -> None:
    """Add examples, the middleware's refusals and the live schemas to a built document."""
    prefix = settings.api_prefix.rstrip("/")
    _add_live_schemas(doc)
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            examples = EXAMPLES.get((method, path.removeprefix(prefix)))
            if examples:
                _add_examples(operation, examples)
            if path in public_paths:
                continue
            responses = operation["responses"]
            if settings.auth_enabled:
                responses.setdefault("401", copy.deepcopy(_UNAUTHORIZED))
                needed = required_scope("http", method.upper(), path, prefix)
                if needed > KeyScope.READ:  # every key can read
                    responses.setdefault("403", _forbidden(needed))
            if settings.rate_limit_enabled:
                responses.setdefault("429", copy.deepcopy(_RATE_LIMITED))


def install_openapi(app: FastAPI, settings: Settings, public_paths: frozenset[str]) -> None:
    """Wrap app.openapi (after install_security has wrapped it) so the document is completed
    once, when it is first built."""
    build: Callable[[], dict[str, Any]] = app.openapi
    completed: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        doc = build()
        if completed.get("doc") is not doc:  # FastAPI caches the document: complete it once
            document(doc, settings, public_paths)
            completed["doc"] = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
