"""`pivot up` owns its processes: it refuses a taken port or a data dir in use before writing or
starting anything, and restarts whatever part of it dies, saying so, while /health tells the
truth about the operator in the meantime."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from pivot_local.platform import REPO_ROOT, LocalPlatform
from pivot_local.procs import free_port, port_open, wait_until_serving
from pivot_local.supervisor import Part, Supervisor
from tests.support.platform import TINY_CONFIG
from tests.support.waiting import wait_for

from .test_pivot_up import interrupt_and_check_nothing_left

pytestmark = pytest.mark.integration

PIVOT = str(Path(sys.executable).parent / "pivot")


class PivotUp:
    """A `pivot up` process whose output is collected by a thread, line by line."""

    def __init__(self, data_dir: Path, port: int, *args: str):
        self.data_dir, self.port = data_dir, port
        self.proc = subprocess.Popen(
            [PIVOT, "up", "--data-dir", str(data_dir), "--port", str(port), *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in self.lines if text in line), None)
            if found is not None:
                return found
            assert self.proc.poll() is None or self._reader.is_alive(), self.output()
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} within {timeout:.0f}s:\n{self.output()}")

    def child(self, marker: str) -> psutil.Process:
        """The direct child of `pivot up` whose command line contains `marker`."""
        for child in psutil.Process(self.proc.pid).children():
            if marker in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                return child
        raise AssertionError(f"no child process like {marker!r}")

    def api(self) -> httpx.Client:
        key = (self.data_dir / "api-key").read_text().strip()
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}/api/v1",
            timeout=30,
            headers={"Authorization": f"Bearer {key}"},
        )


def run_pivot_up(data_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PIVOT, "up", "--data-dir", str(data_dir), "--port", str(port)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def processes_for(data_dir: Path) -> list[psutil.Process]:
    """Processes whose command line or environment names `data_dir` (Redis' --dir, the
    operator's and the API's KUBECONFIG)."""
    found = []
    for proc in psutil.process_iter():
        try:
            text = " ".join(proc.cmdline()) + " ".join(proc.environ().values())
        except psutil.Error:
            continue
        if str(data_dir) in text and proc.status() != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def snapshot(paths: list[Path]) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def test_a_taken_port_stops_pivot_up_before_it_writes_or_starts_anything(tmp_path: Path) -> None:
    data_dir = tmp_path / "pivot"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = run_pivot_up(data_dir, port)
    assert run.returncode != 0
    assert run.stdout.splitlines() == [f"pivot up: port {port} on 127.0.0.1 is already in use"]
    assert not data_dir.exists(), "nothing written: no api-key, kubeconfig or logs"
    assert processes_for(data_dir) == []


def test_the_wait_for_a_server_does_not_take_another_servers_answer(tmp_path: Path) -> None:
    """The health wait of a child that never bound its port: another server answering there
    is not the child (what made a second `pivot up` report the first one's API as its own)."""
    port = free_port()
    other = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: port_open("127.0.0.1", port), 10, "the other server")
        assert httpx.get(url).status_code == 200
        with pytest.raises(RuntimeError, match="did not answer"):
            wait_until_serving(url, child, timeout=2, what="the child", port=port)
    finally:
        child.kill()
        other.kill()
        child.wait()
        other.wait()


def test_a_data_dir_in_use_stops_a_second_pivot_up(tmp_path: Path) -> None:
    data_dir = tmp_path / "pivot"
    first = PivotUp(data_dir, free_port())
    try:
        first.wait_line("serving; press Ctrl-C", 120)
        files = [data_dir / "api-key", data_dir / "kubeconfig", data_dir / "lock"]
        before, logs_before = snapshot(files), sorted(os.listdir(data_dir / "logs"))
        second_port = free_port()
        run = run_pivot_up(data_dir, second_port)
        assert run.returncode != 0
        assert run.stdout.splitlines() == [
            f"pivot up: data dir {data_dir} is in use by another pivot up (pid {first.proc.pid})"
        ]
        assert snapshot(files) == before, "the first one's key and kubeconfig are untouched"
        assert sorted(os.listdir(data_dir / "logs")) == logs_before
        assert not [p for p in processes_for(data_dir) if str(second_port) in p.cmdline()]
        with first.api() as api:  # the first one still serves, with its own key
            assert api.get("/training/sessions").status_code == 200
        interrupt_and_check_nothing_left(first.proc)
    finally:
        first.proc.kill()


# About a second an epoch here (TINY_CONFIG with 16 steps an epoch): the four kills and
# restarts take about ten, so they all land mid-run.
EPOCHS = 24
# Killed in turn while one session trains: (the name pivot up gives it, its command line).
VICTIMS = [
    ("operator", "pivot_operator"),
    ("api", "uvicorn"),
    ("redis", "-server"),
    ("s3", "weed"),
]


def test_pivot_up_restarts_each_part_killed_while_a_session_trains(tmp_path: Path) -> None:
    up = PivotUp(tmp_path / "pivot", free_port(), "--no-rate-limit")
    try:
        up.wait_line("serving; press Ctrl-C", 120)
        api = up.api()

        def session() -> dict[str, Any]:
            try:
                return dict(api.get(f"/training/sessions/{sid}").json())
            except httpx.TransportError:  # the API is down between a kill and its restart
                return {}

        def epoch_after(epoch: int) -> int | None:
            now = session().get("current_epoch") or 0
            return int(now) if now > epoch else None

        def finished() -> dict[str, Any] | None:
            body = session()
            return body if body.get("status") in {"completed", "failed"} else None

        created = api.post(
            "/training/sessions",
            json={"config": {**TINY_CONFIG, "epochs": EPOCHS, "num_train": 256}},
        )
        sid = created.json()["session_id"]
        api.post(f"/training/sessions/{sid}/start").raise_for_status()
        epoch = 0
        for name, marker in VICTIMS:
            # Each kill lands at a fresh epoch of the run, which is still under way.
            epoch = wait_for(partial(epoch_after, epoch), 120, f"an epoch after {epoch}")
            assert session()["status"] == "running", session()
            victim = up.child(marker)
            victim.send_signal(signal.SIGKILL)
            died = up.wait_line(f"{name} (pid {victim.pid}) died: killed by SIGKILL", 30)
            if name == "api":
                assert "/health) is down until it is back" in died
            up.wait_line(f"{name} is back", 90)
        assert epoch < EPOCHS, "the kills happened while it trained"

        final = wait_for(finished, 240, "the session to finish")
        assert final["status"] == "completed", (final, up.output())
        rows = api.get(f"/training/sessions/{sid}/metrics").json()["metrics"]
        assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1)), rows
        health = api.get("/health").json()
        assert health["status"] == "healthy", health
        interrupt_and_check_nothing_left(up.proc)
    finally:
        up.proc.kill()


def test_health_says_the_operator_is_down_until_it_is_restarted(tmp_path: Path) -> None:
    said: list[str] = []
    with LocalPlatform(
        data_dir=tmp_path,
        api_port=free_port(),
        rate_limit=False,
        supervise=True,
        report=said.append,
    ) as platform:
        assert platform.supervisor is not None and platform.operator is not None
        url = f"{platform.api_url}/api/v1/health"

        def operator_state() -> tuple[str, str]:
            body = httpx.get(url, headers=platform.api_headers(), timeout=10).json()
            return body["status"], body["components"]["operator"]

        assert operator_state() == ("healthy", "healthy")
        with platform.supervisor.held("operator"):  # its restart waits
            pid = platform.operator.pid
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: any(f"operator (pid {pid}) died" in s for s in said), 10, "the death")
            # At once (the supervisor drops the dead one's lease), not after the 10 s lease.
            wait_for(lambda: operator_state() == ("degraded", "unhealthy"), 5, "unhealthy")
            time.sleep(1.0)  # past the first backoff: still down, still said so
            assert operator_state() == ("degraded", "unhealthy")
        wait_for(lambda: "operator is back" in said[-1], 60, "the restart")
        assert operator_state() == ("healthy", "healthy")
        assert platform.operator.pid != pid


def test_a_part_that_keeps_dying_makes_the_supervisor_give_up() -> None:
    """The policy, on real processes: each restart dies at once with exit code 3."""

    def crash() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    procs = [crash()]
    said: list[str] = []
    gave_up: list[str] = []
    supervisor = Supervisor(
        [Part("flaky", lambda: procs[-1], lambda: procs.append(crash()))],
        report=said.append,
        on_give_up=gave_up.append,
        backoff_s=0.1,
        max_backoff_s=0.2,
        max_restarts=3,
        poll_s=0.01,
    ).start()
    try:
        wait_for(lambda: gave_up, 30, "the supervisor to give up")
    finally:
        supervisor.join()
    assert len(procs) == 4, "three restarts, then no more"
    deaths = [s for s in said if "died: exit code 3" in s]
    assert len(deaths) == 4, said
    # Doubling from backoff_s up to max_backoff_s.
    assert [s.rsplit(" in ", 1)[-1] for s in deaths[:3]] == ["0.1s", "0.2s", "0.2s"]
    assert gave_up == [supervisor.failure]
    assert "flaky" in gave_up[0] and "died 4 times within 60s, giving up" in gave_up[0]
