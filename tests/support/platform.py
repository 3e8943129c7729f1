"""Driving the whole local platform from a test: a tiny training config, reading sessions and
their pods, and the logs to print when something fails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pivot_local.platform import LocalPlatform
from tests.support.waiting import wait_for

# Small enough to train in seconds on 2 cores, big enough to be real training.
TINY_CONFIG: dict[str, Any] = {
    "epochs": 3,
    "batch_size": 16,
    "learning_rate": 0.01,
    "image_size": 16,
    "num_train": 64,
    "num_val": 16,
    "base_channels": 4,
    "seed": 7,
}


def trainer_pods(kube: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    resp = kube.get(
        "/api/v1/namespaces/default/pods",
        params={"labelSelector": f"pivot.dev/session={session_id}"},
    )
    resp.raise_for_status()
    return list(resp.json()["items"])


def session_status(api: httpx.Client, session_id: str) -> dict[str, Any]:
    resp = api.get(f"/training/sessions/{session_id}")
    resp.raise_for_status()
    return dict(resp.json())


def logs_of(platform: LocalPlatform) -> str:
    parts = []
    for path in sorted(Path(platform.logs).glob("*.log")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
    for path in sorted((platform.data_dir / "kubelet").rglob("*.log")):
        parts.append(f"--- {path}\n{path.read_text(errors='replace')[-2000:]}")
    return "\n".join(parts)


def wait_for_status(
    api: httpx.Client, platform: LocalPlatform, session_id: str, wanted: str, timeout: float
) -> dict[str, Any]:
    """The session as read once it is `wanted`; a session that fails on the way (when failing
    is not what is awaited) ends the wait at once, with the platform's logs."""

    def check() -> dict[str, Any] | None:
        body = session_status(api, session_id)
        if body["status"] == "failed" and wanted != "failed":
            raise AssertionError(f"session failed: {body}\n{logs_of(platform)}")
        return body if body["status"] == wanted else None

    try:
        return wait_for(check, timeout, f"{session_id} to be {wanted}")
    except AssertionError:
        print(logs_of(platform))
        raise


@dataclass(frozen=True)
class DemoRun:
    """What the API said along the demo config's one run: created, read back, started, and
    the session once completed."""

    created: dict[str, Any]
    read_back: dict[str, Any]
    started: dict[str, Any]
    final: dict[str, Any]
