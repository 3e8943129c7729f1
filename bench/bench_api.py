"""API benchmarks on loopback: everything measured is started here.

1. GET /training/sessions/{id} with C keep-alive connections (default 200), the load generator
   in a process of its own: closed loop (each connection sends its next request when the
   previous one answered: throughput-bound, median ~ C / throughput) and open loop (requests
   scheduled at a fixed total rate, latency counted from the scheduled instant, so a slow
   server is not hidden by a client that waits for it).
2. GET /training/sessions?limit=1000 with 1,000 sessions.
3. /metrics/{id}/history of a 1,000,000-point series with max_points=1000, warm and as the
   first read of a fresh API process (rollups in Redis, nothing in memory), against MLflow's
   get-history-bulk-interval (its own downsampled read, what the MLflow UI plots from) on the
   same points loaded into a local `mlflow server` (SQLite), measured the same two ways: its
   first request after a fresh `mlflow server` start (cold) and repeated requests (warm).
   Cold is compared with cold, warm with warm. Also MLflow's get-history (the full series,
   every page), and the rollups' memory beside the stream's.
4. 500 concurrent SSE clients: XADD -> client receives the event, latency p50/p99.

    .venv/bin/python bench/bench_api.py [--workers 2] [--points 1000000] [--skip-mlflow]
        [--only get,list,history,sse] [--rate 1000] [--restarts 10] [--check] [--json PATH]

The load generators are minimal HTTP/1.1 clients on raw asyncio sockets (httpx costs more CPU
per request than the server does), on the same 2 cores as the API: the numbers include the
clients' share of the CPU. Prints Markdown rows for bench/README.md, then the verdict against
bench/_targets.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform as py_platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis
from _mlflow import mlflow_server  # bench/ is the script's directory
from _targets import Results, add_check_args

from pivot_local.kube import run_emulator_in_thread
from pivot_local.procs import free_port, wait_until_serving
from pivot_local.services import RedisServer, S3Server
from pivot_schema import keys

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "trainingsessions.pivot.dev.yaml"
API = "/api/v1"
RESULTS = Results("bench_api")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(measure: str, samples_ms: list[float], note: str = "") -> str:
    return (
        f"| {measure} | {statistics.median(samples_ms):.2f} | {pct(samples_ms, 0.99):.2f} "
        f"| {len(samples_ms)} | {note} |"
    )


# ---- a minimal keep-alive HTTP/1.1 client ---------------------------------------------------


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str) -> tuple[int, bytes]:
        await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        body = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            body += await self.reader.readexactly(size + 2)
            if size == 0:
                return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def timed_gets(host: str, port: int, path: str, clients: int, per_client: int) -> list[float]:
    samples: list[float] = []

    async def one() -> None:
        conn = Conn(host, port)
        try:
            for _ in range(per_client):
                start = time.perf_counter()
                status, _ = await conn.get(path)
                samples.append((time.perf_counter() - start) * 1000)
                assert status == 200, status
        finally:
            conn.close()

    await asyncio.gather(*(one() for _ in range(clients)))
    return samples


async def open_loop_gets(
    host: str, port: int, path: str, clients: int, rate: float, seconds: float
) -> list[float]:
    """Requests at `rate` per second in all, spread over `clients` connections (request i on
    connection i % clients at t0 + i / rate); each latency runs from its scheduled instant, so
    time spent waiting for a busy connection or a late server counts."""
    samples: list[float] = []
    total = int(rate * seconds)
    # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
    t0 = time.perf_counter() + 1.0

    async def one(j: int) -> None:
        conn = Conn(host, port)
        try:
            await conn.connect()  # before t0: connection setup is not what is measured
            for i in range(j, total, clients):
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                status, _ = await conn.get(path)
                samples.append((time.perf_counter() - due) * 1000)
                assert status == 200, status
        finally:
            conn.close()

    await asyncio.gather(*(one(j) for j in range(clients)))
    return samples


def _client_process(kind: str, args: tuple[object, ...], out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    runner = timed_gets if kind == "closed" else open_loop_gets
    out.put(asyncio.run(runner(*args)))  # type: ignore[arg-type]


def in_client_process(kind: str, *args: object) -> list[float]:
    """Run a load generator in a separate process (the server's event loops and the client's
    do not share one Python interpreter's GIL) and return its samples."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_client_process, args=(kind, args, out))
    proc.start()
    try:
        samples: list[float] = out.get(timeout=600)
    finally:
        proc.join(30)
    return samples


# ---- the platform ---------------------------------------------------------------------------


class Api:
    """The uvicorn process under test; `restart` replaces it (same port, Redis and cluster),
    so a read after it finds no worker with anything cached."""

    def __init__(self, cmd: list[str], env: dict[str, str], base: str) -> None:
        self.cmd, self.env, self.base = cmd, env, base
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.cmd, env=self.env)
        wait_until_serving(f"{self.base}{API}/health", proc, timeout=30, what="uvicorn")
        return proc

    def restart(self) -> None:
        self.stop()
        self.proc = self._start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


RESTART: list[Api] = []  # the running API, for benchmarks that restart it


@contextmanager
def api_server(workers: int) -> Iterator[tuple[str, int, redis.Redis]]:
    redis_server = RedisServer().start()
    s3 = S3Server().start()
    configs = Path(tempfile.mkdtemp(prefix="pivot-bench-configs-"))
    (configs / "train.yaml").write_text("epochs: 10\n")
    with run_emulator_in_thread(crds=[CRD]) as emu:
        kubeconfig = emu.write_kubeconfig(configs / "kubeconfig")
        port = free_port("127.0.0.1")
        env = dict(
            os.environ,
            PIVOT_KUBECONFIG=str(kubeconfig),
            PIVOT_CONFIGS_DIR=str(configs),
            PIVOT_REDIS_URL=redis_server.url,
            PIVOT_S3_ENDPOINT=s3.endpoint,
            PIVOT_S3_BUCKET=s3.bucket,
            PIVOT_S3_ACCESS_KEY=s3.access_key,
            PIVOT_S3_SECRET_KEY=s3.secret_key,
            PIVOT_LOG_LEVEL="WARNING",  # an access line per request would measure logging
            # Thousands of requests from one IP: the rate limiter would answer 429.
            PIVOT_RATE_LIMIT_ENABLED="false",
        )
        cmd = [sys.executable, "-m", "uvicorn", "pivot_api.app:app", "--workers", str(workers)]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        cmd += ["--no-access-log", "--backlog", "4096"]
        api = Api(cmd, env, f"http://127.0.0.1:{port}")
        RESTART[:] = [api]
        try:
            yield "127.0.0.1", port, redis.Redis.from_url(redis_server.url)
        finally:
            api.stop()
            redis_server.stop()
            s3.stop()


async def create_sessions(host: str, port: int, n: int) -> list[str]:
    ids: list[str] = []
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=60) as http:

        async def one(i: int) -> None:
            async with sem:
                resp = await http.post(
                    f"{API}/training/sessions",
                    json={"config": {"epochs": 10}, "session_name": f"bench-{i}"},
                )
                resp.raise_for_status()
                ids.append(resp.json()["session_id"])

        await asyncio.gather(*(one(i) for i in range(n)))
        # Every worker's cache has every session once the list says so.
        for _ in range(20):
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as fresh:
                total = (await fresh.get(f"{API}/training/sessions?limit=1")).json()["total"]
            assert total == n, total
    return ids


# ---- history vs MLflow ----------------------------------------------------------------------


def load_series(r: redis.Redis, sid: str, points: int) -> list[float]:
    values = [1.0 / (1 + i / 1000) + (0.05 if i % 997 == 0 else 0.0) for i in range(points)]
    key = keys.metrics_stream(sid)
    for start in range(0, points, 10_000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(points, start + 10_000)):
            record = keys.epoch_record(i + 1, {"val_loss": values[i]}, "2026-11-25T00:00:00Z")
            pipe.xadd(key, keys.encode_record(record))
        pipe.execute()
    return values


async def first_read(host: str, port: int, path: str) -> tuple[float, bytes]:
    conn = Conn(host, port)
    start = time.perf_counter()
    status, body = await conn.get(path)
    elapsed = (time.perf_counter() - start) * 1000
    conn.close()
    assert status == 200, body[:300]
    return elapsed, body


async def bench_history(
    host: str, port: int, r: redis.Redis, sid: str, workers: int, restarts: int, points: int
) -> tuple[list[str], float, list[float], list[float]]:
    """Rows, the first read ever (ms), warm and cold samples (ms)."""
    size = "1M" if points == 1_000_000 else f"{points:,}"
    path = f"{API}/metrics/{sid}/history?metric_name=val_loss&max_points=1000"
    # The series was XADDed around the API: its first read rolls it up (once per series,
    # as for any stream written before rollups existed).
    build_ms, body = await first_read(host, port, path)
    assert len(json.loads(body)["values"]) <= 1000
    # A fresh API process each time: no worker has anything of the series in memory.
    cold: list[float] = []
    bodies: set[bytes] = {body}
    for _ in range(restarts):
        await asyncio.to_thread(RESTART[0].restart)
        elapsed, body = await first_read(host, port, path)
        cold.append(elapsed)
        bodies.add(body)
    # Warm: every worker has served the series (fresh connections land on different workers).
    for _ in range(workers * 8):
        _, body = await first_read(host, port, path)
        bodies.add(body)
    assert len(bodies) == 1, "a cold read answered other than a warm one"
    samples = await timed_gets(host, port, path, clients=1, per_client=200)
    RESULTS.record("history, warm", "p99", pct(samples, 0.99), size=points)
    RESULTS.record("history, warm", "median", statistics.median(samples), size=points)
    first = "history, first read of a fresh API process"
    RESULTS.record(first, "p99", pct(cold, 0.99), size=points)
    RESULTS.record(first, "median", statistics.median(cold), size=points)
    # Exact sizes (SAMPLES 0): the rollups hash against the stream it summarises.
    stream = r.memory_usage(keys.metrics_stream(sid), samples=0) or 0
    rollups = r.memory_usage(keys.series_rollups(sid), samples=0) or 0
    RESULTS.record(
        "history rollups memory vs the stream's", "ratio", 100 * rollups / stream, size=points
    )
    rows = [
        row(f"history, {size} points, max_points=1000 (PIVOT, warm)", samples),
        row(
            f"history, first read (a fresh API process, {size} points, max_points=1000)",
            cold,
            f"one per restart, {restarts} restarts",
        ),
        f"| history, rollups in memory vs the stream's | {rollups / 1e6:.2f} MB of "
        f"{stream / 1e6:.2f} MB | | 1 | {100 * rollups / stream:.1f}% |",
    ]
    return rows, build_ms, samples, cold


def bench_mlflow(
    values: list[float], restarts: int, warm_reps: int, full_reps: int
) -> tuple[list[str], list[float], list[float]]:
    """MLflow's reads of the same series: rows, and its bulk-interval samples (ms) cold (the
    first request after a fresh `mlflow server` start, one per restart, each on a new
    connection as PIVOT's first reads are) and warm (repeated requests, after two untimed)."""
    with mlflow_server() as server, server.client() as http:
        run = server.new_run(http)
        store = server.store
        load_start = time.perf_counter()
        # The first 1000 points go through log-batch (the API a client uses); the rest are
        # inserted into the same SQLite tables directly: log-batch ingests ~500 points/s
        # here, which would make loading 1M points take half an hour. Reads are what we time.
        metrics = [
            {"key": "val_loss", "value": v, "timestamp": 1_700_000_000_000 + i, "step": i + 1}
            for i, v in enumerate(values[:1000])
        ]
        http.post(
            "/api/2.0/mlflow/runs/log-batch", json={"run_id": run, "metrics": metrics}
        ).raise_for_status()
        with sqlite3.connect(store / "mlflow.db") as db:
            db.executemany(
                "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                "VALUES ('val_loss', ?, ?, ?, ?, 0)",
                (
                    (v, 1_700_000_000_000 + i, run, i + 1)
                    for i, v in enumerate(values[1000:], start=1000)
                ),
            )
            db.execute(
                "UPDATE latest_metrics SET value = ?, timestamp = ?, step = ? "
                "WHERE run_uuid = ? AND key = 'val_loss'",
                (values[-1], 1_700_000_000_000 + len(values) - 1, len(values), run),
            )
        load_s = time.perf_counter() - load_start
        sampled_path = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
        sampled_params: dict[str, str | int] = {
            "run_ids": run,
            "metric_key": "val_loss",
            "max_results": 1000,
        }

        def sampled(client: httpx.Client) -> float:
            t0 = time.perf_counter()
            resp = client.get(sampled_path, params=sampled_params)
            elapsed = (time.perf_counter() - t0) * 1000
            resp.raise_for_status()
            return elapsed

        cold: list[float] = []
        for _ in range(restarts):
            server.restart()
            with server.client() as fresh:
                cold.append(sampled(fresh))
        for _ in range(2):
            sampled(http)
        warm = [sampled(http) for _ in range(warm_reps)]
        rows = [
            row("MLflow get-history-bulk-interval, max_results=1000 (warm)", warm),
            row(
                "MLflow get-history-bulk-interval, max_results=1000, first request of a fresh "
                "`mlflow server`",
                cold,
                f"one per restart, {restarts} restarts",
            ),
        ]
        full: list[float] = []
        for _ in range(full_reps):  # ~minutes each at 1M points
            t0 = time.perf_counter()
            got, token = 0, None
            while True:  # get-history pages; a client reading the series reads every page
                params: dict[str, str | int] = {
                    "run_id": run,
                    "metric_key": "val_loss",
                    "max_results": 25_000,
                }
                if token:
                    params["page_token"] = token
                body = http.get("/api/2.0/mlflow/metrics/get-history", params=params).json()
                got += len(body.get("metrics", []))
                token = body.get("next_page_token")
                if not token:
                    break
            full.append((time.perf_counter() - t0) * 1000)
            assert got == len(values), got
        if full:
            rows.append(
                row(
                    f"MLflow get-history, full {len(values)}-point series (warm)",
                    full,
                    f"load {load_s:.0f} s",
                )
            )
        return rows, warm, cold


# ---- SSE fan-out ----------------------------------------------------------------------------


async def bench_sse(host: str, port: int, r: redis.Redis, sid: str, clients: int) -> list[str]:
    latencies: list[float] = []
    connected = 0
    all_connected = asyncio.Event()
    events_per_client = 20

    async def client() -> None:
        nonlocal connected
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        writer.write(f"GET {API}/sse/training/{sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        got = 0
        while got < events_per_client:
            line = await reader.readline()
            if b"retry:" in line:
                connected += 1
                if connected == clients:
                    all_connected.set()
            if line.startswith(b"data: "):
                raw = line[6:].decode()
                body = raw[raw.index("{") : raw.rindex("}") + 1]
                sent = json.loads(body).get("sent_at")
                if sent is not None:
                    latencies.append((time.time() - sent) * 1000)
                    got += 1
        writer.close()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.wait_for(all_connected.wait(), 120)
    await asyncio.sleep(1.0)  # every client is parked in its blocking read
    key = keys.metrics_stream(sid)
    for epoch in range(1, events_per_client + 1):
        record = keys.epoch_record(epoch, {"val_loss": 0.5, "sent_at": time.time()})
        await asyncio.to_thread(r.xadd, key, keys.encode_record(record))
        await asyncio.sleep(0.25)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    RESULTS.record("SSE XADD -> client", "p99", pct(latencies, 0.99), size=clients)
    RESULTS.record("SSE XADD -> client", "median", statistics.median(latencies), size=clients)
    return [row(f"SSE XADD -> client, {clients} clients", latencies, "chunked frames parsed")]


async def main_async(args: argparse.Namespace) -> None:
    rows: list[str] = []
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with api_server(args.workers) as (host, port, r):
        ids = await create_sessions(host, port, args.sessions)
        sid = ids[0]
        only = set(args.only.split(","))
        if "get" in only:
            # 1. GET one session under concurrency (warm-up round first), the client in a
            # process of its own.
            path = f"{API}/training/sessions/{sid}"
            await asyncio.to_thread(in_client_process, "closed", host, port, path, args.clients, 5)
            samples = await asyncio.to_thread(
                in_client_process, "closed", host, port, path, args.clients, args.requests
            )
            rows.append(
                row(f"GET session, {args.clients} clients, closed loop", samples, "own process")
            )
            for stat, value in (
                ("p99", pct(samples, 0.99)),
                ("median", statistics.median(samples)),
            ):
                RESULTS.record("GET session, closed loop", stat, value, size=args.clients)
            for rate in [float(x) for x in args.rate.split(",") if x]:
                samples = await asyncio.to_thread(
                    in_client_process, "open", host, port, path, args.clients, rate, args.seconds
                )
                rows.append(
                    row(
                        f"GET session, {args.clients} connections, open loop {rate:.0f} req/s",
                        samples,
                        "own process",
                    )
                )
        if "list" in only:
            # 2. The full list.
            await timed_gets(host, port, f"{API}/training/sessions?limit=1000", 1, 5)
            samples = await timed_gets(host, port, f"{API}/training/sessions?limit=1000", 1, 100)
            rows.append(
                row(f"GET sessions?limit=1000 ({args.sessions} sessions), 1 client", samples)
            )
        values: list[float] = []
        warm: list[float] = []
        cold: list[float] = []
        if "history" in only:
            # 3. History.
            t0 = time.perf_counter()
            values = await asyncio.to_thread(load_series, r, ids[1], args.points)
            load_s = time.perf_counter() - t0
            hist_rows, build_ms, warm, cold = await bench_history(
                host, port, r, ids[1], args.workers, args.restarts, args.points
            )
            rows += hist_rows
            rows.append(
                f"| history, rollup of a stream written without rollups (first read ever) "
                f"| {build_ms:.0f} | | 1 | XADD of {args.points} points took {load_s:.0f} s |"
            )
        if "sse" in only:
            # 4. SSE.
            rows += await bench_sse(host, port, r, ids[2], args.sse_clients)
    if values and not args.skip_mlflow:
        peer_rows, peer_warm, peer_cold = await asyncio.to_thread(
            bench_mlflow, values, args.restarts, args.mlflow_reps, args.mlflow_full_reps
        )
        rows += peer_rows
        # Like with like: warm against warm, a fresh process's first read against a fresh
        # server's first request.
        for label, ours, theirs in (
            ("history warm vs MLflow bulk-interval warm", warm, peer_warm),
            ("history first read vs MLflow bulk-interval first request", cold, peer_cold),
        ):
            at_median = statistics.median(theirs) / statistics.median(ours)
            at_p99 = pct(theirs, 0.99) / pct(ours, 0.99)
            RESULTS.record(label, "speed-up at the median", at_median, size=args.points)
            RESULTS.record(label, "speed-up at p99", at_p99, size=args.points)
            rows.append(
                f"| {label} | {at_median:.0f}x | {at_p99:.0f}x (p99 vs p99) | "
                f"{len(ours)} / {len(theirs)} | speed-up |"
            )
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {py_platform.machine()}, {os.cpu_count()} cores, "
        f"Python {py_platform.python_version()}, uvicorn --workers {args.workers} (uvloop), "
        f"load average before {load_before}:\n"
    )
    print("| measure | median (ms) | p99 (ms) | n | note |\n|---|---|---|---|---|")
    print("\n".join(rows))
    RESULTS.finish(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200, help="per client")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--sse-clients", type=int, default=500)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument(
        "--restarts", type=int, default=10, help="API (and MLflow) restarts for cold reads"
    )
    parser.add_argument(
        "--only", default="get,list,history,sse", help="comma-separated: get,list,history,sse"
    )
    parser.add_argument(
        "--rate", default="1000", help="open-loop GET session rates, req/s (comma-separated)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per open-loop rate")
    parser.add_argument("--mlflow-reps", type=int, default=10, help="MLflow warm reads")
    parser.add_argument(
        "--mlflow-full-reps", type=int, default=2, help="MLflow full get-history reads (0: none)"
    )
    add_check_args(parser)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
