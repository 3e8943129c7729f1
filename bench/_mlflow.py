"""A throwaway `mlflow server` on loopback (SQLite store, one worker) for the peer rows of the
benchmarks: started in its own process group so its uvicorn and job runners stop with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from pivot_local.procs import free_port, wait_until_serving


@dataclass(frozen=True)
class MlflowServer:
    base_url: str
    store: Path  # holds mlflow.db (the SQLite backend store) and artifacts/

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
    port = free_port("127.0.0.1")
    store = Path(tempfile.mkdtemp(prefix="pivot-bench-mlflow-"))
    # PIVOT_BENCH_MLFLOW: an `mlflow` from another environment (its dependencies are many).
    mlflow_bin = os.environ.get("PIVOT_BENCH_MLFLOW") or str(Path(sys.executable).parent / "mlflow")
    cmd = [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", f"sqlite:///{store}/mlflow.db", "--workers", "1"]
    cmd += ["--default-artifact-root", str(store / "artifacts")]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/health", proc, timeout=start_timeout, what="mlflow server")
        yield MlflowServer(base, store)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
