"""What API keys and rate limits cost per request, on loopback.

Three `uvicorn pivot_api.app:app` servers (one worker each, uvloop) run side by side on one
Redis and one Kubernetes API emulator:

  off           PIVOT_AUTH_ENABLED=false, PIVOT_RATE_LIMIT_ENABLED=false
  keys          API keys only (10 keys configured; the request carries the last one)
  keys+limits   API keys and the two reference limits (moving windows in Redis; the limits
                are raised so that no request is refused, the Redis work is the same)

One keep-alive client sends GET /api/v1/training/sessions (an empty list: the cheapest route
that is neither public nor Redis-bound), one request at a time. The three servers are measured
in alternating rounds, so load from other work on the machine spreads over all three alike.

    .venv/bin/python bench/bench_security.py [--rounds 10] [--per-round 200] [--check]
        [--json PATH]

Prints Markdown rows for bench/README.md, then the verdict against bench/_targets.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as py_platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from _targets import Results, add_check_args  # bench/ is the script's directory

from pivot_local.kube import run_emulator_in_thread
from pivot_local.procs import free_port
from pivot_local.services import RedisServer

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "trainingsessions.pivot.dev.yaml"
PATH = "/api/v1/training/sessions"
KEYS = [f"bench{i}:read:pvt_bench_{i:02d}_" + "x" * 32 for i in range(10)]
KEY = KEYS[-1].split(":", 2)[2]
CONFIGS = {
    "off": {"PIVOT_AUTH_ENABLED": "false", "PIVOT_RATE_LIMIT_ENABLED": "false"},
    "keys": {"PIVOT_AUTH_ENABLED": "true", "PIVOT_RATE_LIMIT_ENABLED": "false"},
    "keys+limits": {
        "PIVOT_AUTH_ENABLED": "true",
        "PIVOT_RATE_LIMIT_ENABLED": "true",
        "PIVOT_RATE_LIMITS": "1000000/minute;10000000/hour",
    },
}


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Conn:
    """A minimal keep-alive HTTP/1.1 client (httpx would cost more CPU than the server)."""

    def __init__(self, port: int, headers: str) -> None:
        self.port = port
        self.request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(head.split(b" ", 2)[1]), head

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@contextmanager
def servers() -> Iterator[dict[str, int]]:
    with ExitStack() as stack:
        redis_server = RedisServer().start()
        stack.callback(redis_server.stop)
        configs = Path(tempfile.mkdtemp(prefix="pivot-bench-configs-"))
        (configs / "train.yaml").write_text("epochs: 10\n")
        emu = stack.enter_context(run_emulator_in_thread(crds=[CRD]))
        kubeconfig = emu.write_kubeconfig(configs / "kubeconfig")
        ports: dict[str, int] = {}
        for name, extra in CONFIGS.items():
            port = free_port("127.0.0.1")
            env = dict(
                os.environ,
                PIVOT_KUBECONFIG=str(kubeconfig),
                PIVOT_CONFIGS_DIR=str(configs),
                PIVOT_REDIS_URL=redis_server.url,
                PIVOT_S3_ENDPOINT="http://127.0.0.1:9",  # not used by this route
                PIVOT_LOG_LEVEL="ERROR",  # health warns about the absent S3 at start
                PIVOT_BACKGROUND_JOBS="false",
                PIVOT_API_KEYS=",".join(KEYS),
                **extra,
            )
            cmd = [sys.executable, "-m", "uvicorn", "pivot_api.app:app", "--port", str(port)]
            cmd += ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]
            proc = subprocess.Popen(cmd, env=env)
            stack.callback(proc.wait, 15)
            stack.callback(proc.terminate)
            ports[name] = port
        deadline = time.monotonic() + 60
        for port in ports.values():
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)
        yield ports


async def measure(ports: dict[str, int], rounds: int, per_round: int) -> dict[str, list[float]]:
    conns = {name: Conn(port, f"Authorization: Bearer {KEY}\r\n") for name, port in ports.items()}
    samples: dict[str, list[float]] = {name: [] for name in ports}
    try:
        for name, conn in conns.items():  # warm up: connections, caches, Lua scripts
            for _ in range(100):
                status, head = await conn.get()
                assert status == 200, (name, status)
            has_headers = b"x-ratelimit-limit" in head.lower()
            assert has_headers == (name == "keys+limits"), name
        for _ in range(rounds):
            for name, conn in conns.items():
                for _ in range(per_round):
                    start = time.perf_counter()
                    status, _ = await conn.get()
                    samples[name].append((time.perf_counter() - start) * 1000)
                    assert status == 200, (name, status)
    finally:
        for conn in conns.values():
            conn.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=200)
    add_check_args(parser)
    args = parser.parse_args()
    results = Results("bench_security")
    with servers() as ports:
        samples = asyncio.run(measure(ports, args.rounds, args.per_round))
    base = statistics.median(samples["off"])
    load = os.getloadavg()[0]
    print(
        f"{time.strftime('%Y-%m-%d')}, {py_platform.machine()}, {os.cpu_count()} cores, "
        f"Python {py_platform.python_version()}, load average {load:.1f} at the end\n"
    )
    print("| server | p50 (ms) | p99 (ms) | mean (ms) | p50 over off (ms) | n |")
    print("|---|---|---|---|---|---|")
    for name, got in samples.items():
        print(
            f"| {name} | {statistics.median(got):.3f} | {pct(got, 0.99):.3f} "
            f"| {statistics.fmean(got):.3f} | {statistics.median(got) - base:+.3f} | {len(got)} |"
        )
        results.record(f"{name}: p50", "median", statistics.median(got))
        results.record(f"{name}: p99", "p99", pct(got, 0.99))
        if name != "off":
            results.record(f"{name}: p50 over off", "difference", statistics.median(got) - base)
    results.finish(args)


if __name__ == "__main__":
    main()
