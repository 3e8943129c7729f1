"""Walking-skeleton latencies on the local platform.

1. CR create -> trainer pod Running, and CR create -> the trainer's first metric in Redis,
   median and p90 over N sessions (created one at a time, each running 1 tiny epoch).
2. Wall time of `pivot up --demo` from launch to the demo session's completion.

    .venv/bin/python bench/bench_skeleton.py [--sessions 20] [--skip-demo] [--check] [--json PATH]

Prints a Markdown table row set for bench/README.md, then the verdict against
bench/_targets.py.
"""

from __future__ import annotations

import argparse
import os
import platform as py_platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis
from _targets import Results, add_check_args  # bench/ is the script's directory

from pivot_local.platform import REPO_ROOT, LocalPlatform
from pivot_local.procs import free_port
from pivot_schema import keys

TINY = {
    "epochs": 1,
    "batch_size": 16,
    "image_size": 16,
    "num_train": 32,
    "num_val": 8,
    "base_channels": 4,
}
CR_URL = "/apis/pivot.dev/v1alpha1/namespaces/default/trainingsessions"


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def bench_sessions(n: int) -> tuple[list[float], list[float]]:
    to_running: list[float] = []
    to_metric: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, LocalPlatform(data_dir=tmp, with_api=False) as p:
        assert p.redis is not None
        r = redis.Redis.from_url(p.redis.url)
        kube = httpx.Client(base_url=p.kube.url, timeout=30)
        for i in range(n):
            name = f"bench-{i}"
            body = {
                "apiVersion": "pivot.dev/v1alpha1",
                "kind": "TrainingSession",
                "metadata": {"name": name},
                "spec": {"config": TINY},
            }
            t0 = time.perf_counter()
            kube.post(CR_URL, json=body).raise_for_status()
            running = metric = None
            deadline = t0 + 120
            while (running is None or metric is None) and time.perf_counter() < deadline:
                if running is None:
                    pod = kube.get(f"/api/v1/namespaces/default/pods/{name}-trainer")
                    if pod.status_code == 200 and pod.json()["status"].get("phase") in (
                        "Running",
                        "Succeeded",
                    ):
                        running = time.perf_counter() - t0
                if metric is None and r.xlen(keys.metrics_stream(name)) > 0:
                    metric = time.perf_counter() - t0
                time.sleep(0.005)
            if running is None or metric is None:
                raise RuntimeError(f"{name} did not run; see {p.logs}")
            to_running.append(running)
            to_metric.append(metric)
            # Let it finish before the next one, so sessions do not compete for the 2 cores.
            while kube.get(f"{CR_URL}/{name}").json().get("status", {}).get("phase") != "Completed":
                time.sleep(0.05)
    return to_running, to_metric


def bench_demo() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "pivot"),
                "up",
                "--demo",
                "--data-dir",
                tmp,
                "--port",
                str(port),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        elapsed = None
        for line in proc.stdout:
            if line.startswith("final metrics"):
                elapsed = time.perf_counter() - t0
            if line.startswith("serving") or "session ended" in line:
                break
        proc.send_signal(2)
        proc.wait(60)
        if elapsed is None:
            raise RuntimeError("the demo did not complete")
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--skip-demo", action="store_true")
    add_check_args(parser)
    args = parser.parse_args()
    results = Results("bench_skeleton")
    print(
        f"# {py_platform.processor() or py_platform.machine()}, {os.cpu_count()} cores, "
        f"Python {py_platform.python_version()}"
    )
    running, metric = bench_sessions(args.sessions)
    results.record("CR create -> pod Running", "median", statistics.median(running) * 1e3)
    results.record("CR create -> pod Running", "p90", p90(running) * 1e3)
    results.record("CR create -> first metric in Redis", "median", statistics.median(metric))
    results.record("CR create -> first metric in Redis", "p90", p90(metric))
    print("| measure | median (s) | p90 (s) | n |")
    print("|---|---|---|---|")
    print(
        f"| CR create -> pod Running | {statistics.median(running):.3f} | {p90(running):.3f} "
        f"| {len(running)} |"
    )
    print(
        f"| CR create -> first metric in Redis | {statistics.median(metric):.3f} | "
        f"{p90(metric):.3f} | {len(metric)} |"
    )
    if not args.skip_demo:
        demo = bench_demo()
        results.record("`pivot up --demo` -> session completed", "value", demo)
        print(f"| `pivot up --demo` -> session completed | {demo:.1f} | | 1 |")
    results.finish(args)


if __name__ == "__main__":
    main()
