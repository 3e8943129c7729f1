"""A throwaway `mlflow server` on loopback (SQLite store, one worker) for the peer rows of the
benchmarks: started in its own process group so its uvicorn and job runners stop with it.
`restart` replaces the process (same port and store), for reads timed as a fresh server's
first request, as PIVOT's first reads are a fresh API process's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from pivot_local.procs import free_port, wait_until_serving


class MlflowServer:
    def __init__(self, start_timeout: float = 120) -> None:
        self.port = free_port("127.0.0.1")
        self.base_url = f"http://127.0.0.1:{self.port}"
        # Holds mlflow.db (the SQLite backend store) and artifacts/.
        self.store = Path(tempfile.mkdtemp(prefix="pivot-bench-mlflow-"))
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # PIVOT_BENCH_MLFLOW: an `mlflow` from another environment (its dependencies are many).
        mlflow_bin = os.environ.get("PIVOT_BENCH_MLFLOW") or str(
            Path(sys.executable).parent / "mlflow"
        )
        cmd = [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--backend-store-uri", f"sqlite:///{self.store}/mlflow.db", "--workers", "1"]
        cmd += ["--default-artifact-root", str(self.store / "artifacts")]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_until_serving(
            f"{self.base_url}/health", self._proc, timeout=self.start_timeout, what="mlflow server"
        )

    def stop(self) -> None:
        if self._proc is None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(15)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, timeout: float = 600) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def new_run(self, http: httpx.Client, experiment: str = "bench") -> str:
        """A fresh run in a new experiment; its run_id."""
        exp = http.post("/api/2.0/mlflow/experiments/create", json={"name": experiment})
        exp.raise_for_status()
        run = http.post(
            "/api/2.0/mlflow/runs/create",
            json={"experiment_id": exp.json()["experiment_id"], "start_time": 0},
        )
        run.raise_for_status()
        return str(run.json()["run"]["info"]["run_id"])


@contextmanager
def mlflow_server(start_timeout: float = 120) -> Iterator[MlflowServer]:
    server = MlflowServer(start_timeout)
    try:
        server.start()
        yield server
    finally:
        server.stop()
