"""The data dir keeps the data: a platform started again on the same `--data-dir` has every
session, metric and checkpoint of the last one, as `mlflow server` keeps its runs, and a
session that was training when the platform stopped goes on from its latest checkpoint."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from pivot_local.platform import REPO_ROOT, LocalPlatform
from pivot_local.procs import free_port
from tests.support.platform import TINY_CONFIG, session_status, wait_for_status
from tests.support.targets import NEEDS_PROCESS_KUBELET, REAL_KUBECONFIG
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.process_kubelet]


@contextmanager
def platform_on(data_dir: Path) -> Iterator[tuple[LocalPlatform, httpx.Client]]:
    if REAL_KUBECONFIG:
        pytest.skip(NEEDS_PROCESS_KUBELET)
    with (
        LocalPlatform(
            data_dir=data_dir,
            api_port=free_port(),
            configs_dir=REPO_ROOT / "configs",
            rate_limit=False,
        ) as platform,
        httpx.Client(
            base_url=f"{platform.api_url}/api/v1", timeout=30, headers=platform.api_headers()
        ) as api,
    ):
        yield platform, api


def start_session(api: httpx.Client, config: dict[str, Any], name: str) -> str:
    resp = api.post("/training/sessions", json={"config": config, "session_name": name})
    assert resp.status_code == 201, resp.text
    sid = str(resp.json()["session_id"])
    assert api.post(f"/training/sessions/{sid}/start").status_code == 200
    return sid


def everything_about(api: httpx.Client, sid: str) -> dict[str, Any]:
    """What a user reads of a finished session: status, metrics, history, checkpoints and
    the bytes of each checkpoint file."""
    checkpoints = api.get("/checkpoints", params={"session_id": sid}).json()["checkpoints"]
    files = {}
    for ckpt in checkpoints:
        resp = api.get(f"/checkpoints/{ckpt['checkpoint_id']}/download")
        assert resp.status_code == 200, resp.text
        files[ckpt["checkpoint_id"]] = hashlib.sha256(resp.content).hexdigest()
    session = session_status(api, sid)
    return {
        "session": {
            k: session[k]
            for k in (
                "status",
                "current_epoch",
                "total_epochs",
                "latest_metrics",
                "started_at",
                "completed_at",
            )
        },
        "metrics": api.get(f"/training/sessions/{sid}/metrics").json()["metrics"],
        "history": api.get(f"/metrics/{sid}/history", params={"metric_name": "val_loss"}).json(),
        "checkpoints": checkpoints,
        "files": files,
    }


def test_a_restarted_platform_has_every_session_metric_and_checkpoint(tmp_path: Path) -> None:
    data_dir = tmp_path / "pivot"
    with platform_on(data_dir) as (platform, api):
        sid = start_session(api, TINY_CONFIG, "kept")
        wait_for_status(api, platform, sid, "completed", timeout=180)
        before = everything_about(api, sid)

    assert before["session"]["status"] == "completed"
    assert [r["epoch"] for r in before["metrics"]] == [1, 2, 3]
    assert before["history"]["epochs"] == [1, 2, 3]
    assert before["checkpoints"]
    for ckpt in before["checkpoints"]:
        assert before["files"][ckpt["checkpoint_id"]] == ckpt["sha256"]

    with platform_on(data_dir) as (platform, api):
        # The API's session cache fills from the emulator's watch: moments after start.
        wait_for(
            lambda: api.get(f"/training/sessions/{sid}").status_code == 200,
            30,
            f"{sid} to be listed again",
        )
        after = everything_about(api, sid)
        assert after == before
        listed = api.get("/training/sessions", params={"limit": 1000}).json()["sessions"]
        assert [s["session_id"] for s in listed] == [sid]


def test_a_session_training_when_the_platform_stops_resumes_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "pivot"
    config = {**TINY_CONFIG, "epochs": 30}
    with platform_on(data_dir) as (platform, api):
        sid = start_session(api, config, "interrupted")
        wait_for(
            lambda: (session_status(api, sid).get("current_epoch") or 0) >= 2,
            120,
            f"{sid} to finish two epochs",
        )
        # Stopping the platform SIGTERMs the trainer: it checkpoints, as on a node drain.

    with platform_on(data_dir) as (platform, api):
        # The kubelet finds the pod it no longer runs, reports it lost; the operator takes
        # that as a preemption (not a failure) and resumes from the latest checkpoint.
        final = wait_for_status(api, platform, sid, "completed", timeout=240)
        assert final["current_epoch"] == 30
        rows = api.get(f"/training/sessions/{sid}/metrics").json()["metrics"]
        assert [r["epoch"] for r in rows] == list(range(1, 31))  # every epoch once
        kube = platform.http()
        with kube:
            ts = kube.get(
                f"/apis/pivot.dev/v1alpha1/namespaces/default/trainingsessions/{sid}"
            ).json()
        status = ts["status"]
        assert int(status.get("preemptions") or 0) >= 1, status
        assert not int(status.get("restarts") or 0), status  # not counted as a failure
