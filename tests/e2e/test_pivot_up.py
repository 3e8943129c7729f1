"""`pivot up` as a user runs it: a demo session to completion, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from pivot_local.platform import REPO_ROOT
from pivot_local.procs import free_port
from tests.support.platform import TINY_CONFIG
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PIVOT = str(Path(sys.executable).parent / "pivot")


def start_pivot_up(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [PIVOT, "up", "--data-dir", str(tmp_path / "pivot"), "--port", str(port), *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, port


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line.rstrip())
        if marker in line:
            return lines
        assert time.monotonic() < deadline, "\n".join(lines)
    raise AssertionError("pivot up exited early:\n" + "\n".join(lines))


def interrupt_and_check_nothing_left(proc: subprocess.Popen[str]) -> None:
    descendants = psutil.Process(proc.pid).children(recursive=True)
    assert descendants, "pivot up should have started child processes"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) in (0, 1)
    _gone, alive = psutil.wait_procs(descendants, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive


def test_demo_trains_to_completion_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    proc, _port = start_pivot_up(tmp_path, "--demo")
    try:
        lines = read_until(proc, "serving; press Ctrl-C", timeout=240)
        text = "\n".join(lines)
        assert "completed" in text, text
        assert "final metrics (epoch 8)" in text, text
        interrupt_and_check_nothing_left(proc)
    finally:
        proc.kill()


def test_ctrl_c_while_training_kills_the_trainer_and_redis(tmp_path: Path) -> None:
    proc, port = start_pivot_up(tmp_path, "--no-rate-limit")  # it polls 4 times a second
    try:
        lines = read_until(proc, "serving; press Ctrl-C", timeout=120)
        # `pivot up` prints the admin key it made and leaves it in the data dir.
        key = (tmp_path / "pivot" / "api-key").read_text().strip()
        assert f"export PIVOT_API_KEY={key}" in "\n".join(lines)
        # ... and the URL to export beside it: the CLI's default is port 8000, not --port's.
        assert f"export PIVOT_URL=http://127.0.0.1:{port}" in "\n".join(lines)
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1",
            timeout=30,
            headers={"Authorization": f"Bearer {key}"},
        )
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/training/sessions").status_code == 401
        created = api.post(
            "/training/sessions", json={"config": {**TINY_CONFIG, "epochs": 500}}
        ).json()
        session_id = created["session_id"]
        api.post(f"/training/sessions/{session_id}/start").raise_for_status()
        wait_for(
            lambda: api.get(f"/training/sessions/{session_id}").json()["status"] == "running",
            60,
            "the session to run",
        )
        names = " ".join(
            " ".join(p.cmdline()) for p in psutil.Process(proc.pid).children(recursive=True)
        )
        assert "pivot_trainer" in names
        assert "valkey-server" in names or "redis-server" in names
        interrupt_and_check_nothing_left(proc)
    finally:
        proc.kill()
