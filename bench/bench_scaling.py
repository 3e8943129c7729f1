"""Cost curves as the work grows: how each cost of the platform scales with its work, beside
MLflow's where MLflow does the same job, drawn into one PNG (bench/scaling.png).

1. history: p99 of a downsampled read (max_points=1000), as the first read of a fresh API
   process (cold) and repeated (warm), vs the series' length: a step series (train_loss by
   global step, column entries as the trainer's sink writes them) of 10k..10M points and an
   epoch series (one JSON record per point) of 10k..1M; MLflow's get-history-bulk-interval of
   the same step series, cold (first request of a fresh `mlflow server`) and warm, 10k..1M.
   Rollups are built before any read, by the API's own code (`MetricsService.keep_rollups`,
   what its RollupKeeper runs while trainers write), as a running platform has them.
2. ingest: step points/s into one Redis (AOF everysec, as the Helm chart) vs concurrent
   trainers (1..32 processes, each the trainer's real `RecordSink`, logging as fast as it
   can, the same total of points split between them), and Redis's CPU per million points.
3. list: p99 of GET /training/sessions (limit 50, the default page; and limit 1000) vs the
   sessions in the API's watch cache (100..10,000 CRs posted to the Kubernetes API emulator).
4. operator: CPU per session-minute while sessions wait (a window of one resync period) and
   RSS vs sessions (100..5,000), the operator against the emulator as bench_operator.py runs
   it (pods never bound, nothing trains); and its CPU per session created.
5. sse: p99 of XADD -> event at the client vs concurrent SSE clients of one session (100..2,000).
6. memory: Redis MEMORY USAGE of a session's stream and its rollups vs points (1k..10M steps,
   1k..1M epochs).

    .venv/bin/python bench/bench_scaling.py [--quick] [--skip-mlflow]
        [--only history,ingest,list,operator,sse,memory] [--png PATH] [--json PATH] [--plot JSON]

`PIVOT_BENCH_MLFLOW` names the `mlflow` to run (as bench_api.py). `--quick` runs small sizes
(a smoke run, under 2 minutes; its PNG goes to a temporary file unless --png says otherwise);
`--plot JSON` redraws the PNG from a `--json` file without measuring. Prints a Markdown table
per curve and the total wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform as py_platform
import resource
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import psutil
import redis
import yaml
from _common import redis_durability  # bench/ is the script's directory
from _mlflow import MlflowServer, mlflow_server
from _targets import Results, add_check_args
from bench_api import API, RESTART, api_server, bench_sse, create_sessions, first_read, timed_gets
from bench_api import RESULTS as API_RESULTS
from bench_api import pct as api_pct
from bench_operator import CR_URL, PodWatch, cpu_seconds, emulator_thread_id, post_all
from redis.asyncio import Redis as AsyncRedis

from pivot_api.metrics.service import MetricsService
from pivot_api.sessions.service import SessionService
from pivot_local.platform import LocalPlatform
from pivot_local.services import RedisServer
from pivot_schema import keys
from pivot_trainer.sink import RecordSink

BENCH = Path(__file__).resolve().parent
CURVES = ("history", "ingest", "list", "operator", "sse", "memory")
MAX_POINTS = 1000  # what a chart asks for
WORKERS = 2  # the API's uvicorn workers, as bench_api.py and the chart's replica
T0_US = 1_700_000_000_000_000  # the first step point's time (microseconds since the epoch)


@dataclass(frozen=True)
class Sizes:
    steps: tuple[int, ...]  # history of a step series
    epochs: tuple[int, ...]  # history of an epoch series
    mlflow: tuple[int, ...]
    cold_steps: int  # cold reads (API restarts) per step series
    cold_epochs: int
    mlflow_cold: int  # mlflow server restarts per series
    trainers: tuple[int, ...]
    ingest_points: int  # in all, split between the trainers
    ingest_reps: int
    sessions_list: tuple[int, ...]
    sessions_operator: tuple[int, ...]
    operator_window_s: float
    operator_settle: bool  # wait for every Schedulable timeout before the window
    operator_deadline_s: float  # for a size's pods (a third of it for the settling)
    sse_clients: tuple[int, ...]
    memory_steps: tuple[int, ...]
    memory_epochs: tuple[int, ...]


FULL = Sizes(
    steps=(10_000, 100_000, 1_000_000, 10_000_000),
    epochs=(10_000, 30_000, 100_000, 1_000_000),
    mlflow=(10_000, 100_000, 1_000_000),
    cold_steps=4,
    cold_epochs=2,
    mlflow_cold=2,
    trainers=(1, 2, 4, 8, 16, 32),
    ingest_points=1_000_000,
    ingest_reps=3,
    sessions_list=(100, 300, 1000, 3000, 10_000),
    sessions_operator=(100, 300, 1000, 2000, 5000),
    # One resync period (the operator's PIVOT_RESYNC_SECONDS default): every waiting session's
    # daemon syncs once in it, whatever the phase of its timer.
    operator_window_s=30.0,
    operator_settle=True,
    operator_deadline_s=180.0,
    sse_clients=(100, 300, 1000, 2000),
    memory_steps=(1000, 10_000, 100_000, 1_000_000, 10_000_000),
    memory_epochs=(1000, 10_000, 100_000, 1_000_000),
)
QUICK = Sizes(
    steps=(10_000, 100_000),
    epochs=(10_000,),
    mlflow=(10_000,),
    cold_steps=1,
    cold_epochs=1,
    mlflow_cold=1,
    trainers=(1, 4),
    ingest_points=200_000,
    ingest_reps=1,
    sessions_list=(100, 300),
    sessions_operator=(20, 50),
    operator_window_s=5.0,
    operator_settle=False,
    operator_deadline_s=60.0,
    sse_clients=(50, 100),
    memory_steps=(1000, 10_000, 100_000),
    memory_epochs=(1000, 10_000),
)


def p99(samples: Sequence[float]) -> float:
    return api_pct(list(samples), 0.99)


def stats(samples_ms: Sequence[float]) -> dict[str, float]:
    return {"p99": p99(samples_ms), "median": statistics.median(samples_ms), "n": len(samples_ms)}


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    sys.stdout.flush()


# ---- series in Redis, as the trainer writes them --------------------------------------------


def loss(g: np.ndarray) -> np.ndarray:
    """Point g of a series: a loss that falls with a ripple (min/max buckets have work to do)."""
    return 1.0 / (1 + g / 1000) + 0.01 * np.sin(g)


def write_steps(r: redis.Redis, sid: str, n: int) -> None:
    """n step points of train_loss in the layout the trainer's sink writes (column entries of
    keys.STEPS_CHUNK points, keys.encode_step_columns), by pipelined XADD; 1000 steps an epoch."""
    key = keys.steps_stream(sid)
    chunk = keys.STEPS_CHUNK
    batch = 256 * chunk
    for start in range(0, n, batch):
        g = np.arange(start, min(n, start + batch), dtype=np.int64)
        columns = [
            (g // 1000 + 1).tolist(),
            (g % 1000 + 1).tolist(),
            (g + 1).tolist(),
            loss(g).tolist(),
            (T0_US + g * 1000).tolist(),
        ]
        pipe = r.pipeline(transaction=False)
        for a in range(0, g.size, chunk):
            pipe.xadd(key, keys.encode_step_columns([c[a : a + chunk] for c in columns]))
        pipe.execute()


def write_epochs(r: redis.Redis, sid: str, n: int) -> None:
    """n epoch records of val_loss, one stream entry each (as the trainer's metric records)."""
    key = keys.metrics_stream(sid)
    values = loss(np.arange(n)).tolist()
    for start in range(0, n, 10_000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(n, start + 10_000)):
            record = keys.epoch_record(i + 1, {"val_loss": values[i]}, "2026-11-25T00:00:00Z")
            pipe.xadd(key, keys.encode_record(record))
        pipe.execute()


async def keep_rollups(url: str, sid: str) -> None:
    """The API's own fold of a stream into its rollups (what its RollupKeeper runs while a
    trainer writes), so reads find them as a running platform has them."""
    client = AsyncRedis.from_url(url)
    try:
        # keep_rollups reads and writes Redis only: no session lookup.
        await MetricsService(client, cast(SessionService, None)).keep_rollups(sid)
    finally:
        await client.aclose()


class SeriesStore:
    """Series built once per (kind, points) in one Redis, under the session ids given."""

    def __init__(self, r: redis.Redis, url: str) -> None:
        self.r, self.url = r, url
        self.built: dict[tuple[str, int], str] = {}
        self.timings: dict[tuple[str, int], tuple[float, float]] = {}  # write s, rollups s

    async def get(self, kind: str, n: int, sid: str | None = None) -> str:
        if (kind, n) in self.built:
            return self.built[(kind, n)]
        sid = sid or f"scale-{kind}-{n}-{uuid.uuid4().hex[:6]}"
        t0 = time.perf_counter()
        writer = write_steps if kind == "steps" else write_epochs
        await asyncio.to_thread(writer, self.r, sid, n)
        t1 = time.perf_counter()
        await keep_rollups(self.url, sid)
        self.timings[(kind, n)] = (t1 - t0, time.perf_counter() - t1)
        self.built[(kind, n)] = sid
        return sid


# ---- 1. history vs series length ------------------------------------------------------------


def history_path(kind: str, sid: str) -> str:
    if kind == "steps":
        return f"{API}/metrics/{sid}/steps?metric_name=train_loss&max_points={MAX_POINTS}"
    return f"{API}/metrics/{sid}/history?metric_name=val_loss&max_points={MAX_POINTS}"


async def warm_reads(host: str, port: int, path: str, budget_s: float) -> list[float]:
    """Repeated reads on one kept connection: up to 200, fewer where one read is slow."""
    probe = await timed_gets(host, port, path, 1, 3)
    reps = int(min(200, max(20, budget_s * 1000 / max(statistics.median(probe), 0.1))))
    return await timed_gets(host, port, path, 1, reps)


async def bench_history(
    host: str, port: int, store: SeriesStore, sids: list[str], sizes: Sizes
) -> dict[str, Any]:
    series: list[tuple[str, int, str]] = []
    for kind, lengths in (("steps", sizes.steps), ("epochs", sizes.epochs)):
        for n in lengths:
            series.append((kind, n, await store.get(kind, n, sids.pop())))
            w, b = store.timings[(kind, n)]
            print(f"history: {kind} {n:,} points written in {w:.1f} s, rolled up in {b:.1f} s")
    bodies: dict[str, set[bytes]] = {sid: set() for _, _, sid in series}
    cold: dict[str, list[float]] = {sid: [] for _, _, sid in series}
    rounds = max(sizes.cold_steps, sizes.cold_epochs)
    restart_s: list[float] = []
    for k in range(rounds):
        for kind, _, sid in series:
            if k >= (sizes.cold_steps if kind == "steps" else sizes.cold_epochs):
                continue
            t0 = time.perf_counter()
            await asyncio.to_thread(RESTART[0].restart)
            restart_s.append(time.perf_counter() - t0)
            # The fresh process's first request: nothing of the series in its memory.
            elapsed, body = await first_read(host, port, history_path(kind, sid))
            cold[sid].append(elapsed)
            bodies[sid].add(body)
    print(f"history: API restart (2 workers) median {statistics.median(restart_s):.1f} s")
    out: dict[str, Any] = {"steps": [], "epochs": []}
    for kind, n, sid in series:
        path = history_path(kind, sid)
        for _ in range(WORKERS * 4):  # fresh connections: every worker serves it
            _, body = await first_read(host, port, path)
            bodies[sid].add(body)
        assert len(bodies[sid]) == 1, f"{kind} {n}: a cold read answered other than a warm one"
        got = json.loads(next(iter(bodies[sid])))
        assert got["total_points"] == n and len(got["values"]) <= MAX_POINTS, got["total_points"]
        warm = await warm_reads(host, port, path, budget_s=3.0)
        w, b = store.timings[(kind, n)]
        out[kind].append(
            {
                "points": n,
                "cold": stats(cold[sid]),
                "warm": stats(warm),
                "write_s": w,
                "rollups_s": b,
            }
        )
    return out


def mlflow_history(sizes: Sequence[int], restarts: int) -> list[dict[str, Any]]:
    """MLflow's get-history-bulk-interval (its own sampled read, what its UI plots from) of the
    same step series, one run per length in one `mlflow server` (SQLite): cold, the first
    request of a fresh server (one per restart, sizes in turn), and warm."""
    path = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
    with mlflow_server() as server, server.client() as http:
        runs: dict[int, str] = {}
        for n in sizes:
            t0 = time.perf_counter()
            runs[n] = load_mlflow(server, http, n)
            print(f"mlflow: {n:,} points loaded in {time.perf_counter() - t0:.1f} s", flush=True)

        def read(client: httpx.Client, n: int) -> float:
            params: dict[str, str | int] = {
                "run_ids": runs[n],
                "metric_key": "train_loss",
                "max_results": MAX_POINTS,
            }
            t0 = time.perf_counter()
            resp = client.get(path, params=params)
            elapsed = (time.perf_counter() - t0) * 1000
            resp.raise_for_status()
            assert len(resp.json()["metrics"]) <= MAX_POINTS + 2  # MLflow adds first and last
            return elapsed

        cold: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(restarts):
            for n in sizes:
                server.restart()
                with server.client() as fresh:
                    cold[n].append(read(fresh, n))
        out = []
        for n in sizes:
            probe = [read(http, n) for _ in range(2)]  # untimed: caches of this server
            reps = int(min(50, max(3, 8000 / statistics.median(probe))))
            warm = [read(http, n) for _ in range(reps)]
            out.append({"points": n, "cold": stats(cold[n]), "warm": stats(warm)})
        return out


def load_mlflow(server: MlflowServer, http: httpx.Client, n: int) -> str:
    """A run holding the step series: its first 1000 points through log-batch (the API a
    client uses), the rest inserted into MLflow's SQLite `metrics` table directly (log-batch
    takes ~10k points/s here: minutes for 1M points; reads are what is timed)."""
    run = server.new_run(http, f"scale-{n}-{uuid.uuid4().hex[:6]}")
    g = np.arange(n, dtype=np.int64)
    values = loss(g).tolist()
    head = [
        {"key": "train_loss", "value": values[i], "timestamp": 1_700_000_000_000 + i, "step": i + 1}
        for i in range(min(n, 1000))
    ]
    http.post(
        "/api/2.0/mlflow/runs/log-batch", json={"run_id": run, "metrics": head}
    ).raise_for_status()
    with sqlite3.connect(server.store / "mlflow.db") as db:
        db.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES ('train_loss', ?, ?, ?, ?, 0)",
            ((values[i], 1_700_000_000_000 + i, run, i + 1) for i in range(1000, n)),
        )
        db.execute(
            "UPDATE latest_metrics SET value = ?, timestamp = ?, step = ? "
            "WHERE run_uuid = ? AND key = 'train_loss'",
            (values[-1], 1_700_000_000_000 + n - 1, n, run),
        )
    return run


# ---- 2. ingest vs concurrent trainers -------------------------------------------------------


def _trainer(url: str, points: int, ready: Any, go: Any, out: Any) -> None:
    """One trainer process: the real sink, step points as fast as the loop can log them."""
    sid = f"ingest-{uuid.uuid4().hex[:8]}"
    sink = RecordSink(url, sid, spool_dir=tempfile.mkdtemp(prefix="pivot-bench-spool-"))
    sink.start()
    ready.release()
    go.wait()
    for i in range(points):
        sink.step(1 + i // 1000, 1 + i % 1000, i + 1, 1.0 / (i + 1))
    ok = sink.close(120)
    out.put((sid, sink.sent if ok else -1, time.perf_counter()))


def ingest_once(server: RedisServer, trainers: int, total: int) -> tuple[float, float]:
    """Points/s from the start signal to the last trainer's last point acknowledged by Redis,
    and Redis's CPU seconds per million points meanwhile."""
    # Forked: the children start in milliseconds with the sink already imported. Nothing
    # else runs threads yet (this curve goes first).
    assert threading.active_count() == 1, "fork with threads running"
    ctx = multiprocessing.get_context("fork")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    each = total // trainers
    procs = [
        ctx.Process(target=_trainer, args=(server.url, each, ready, go, out))
        for _ in range(trainers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        assert ready.acquire(timeout=60)
    assert server.proc is not None
    rproc = psutil.Process(server.proc.pid)
    cpu0 = sum(rproc.cpu_times()[:2])
    t0 = time.perf_counter()
    go.set()
    done = [out.get(timeout=300) for _ in procs]
    cpu = sum(rproc.cpu_times()[:2]) - cpu0
    for p in procs:
        p.join(30)
    end = max(d[2] for d in done)
    r = redis.Redis.from_url(server.url)
    for sid, sent, _ in done:
        assert sent == each, (sid, sent, each)
        r.delete(keys.steps_stream(sid))  # keeps Redis's memory to one run's points
    r.close()
    return each * trainers / (end - t0), cpu / (each * trainers) * 1e6


def bench_ingest(sizes: Sizes) -> dict[str, Any]:
    server = RedisServer().start()
    try:
        durability = redis_durability(server)
        ingest_once(server, 1, sizes.ingest_points // 10)  # untimed: Redis's first allocations
        rows = []
        for n in sizes.trainers:
            runs = [ingest_once(server, n, sizes.ingest_points) for _ in range(sizes.ingest_reps)]
            rates = [r for r, _ in runs]
            rows.append(
                {
                    "trainers": n,
                    "points": sizes.ingest_points // n * n,
                    "points_per_s": statistics.median(rates),
                    "runs": rates,
                    "redis_cpu_s_per_million": statistics.median(c for _, c in runs),
                }
            )
            print(f"ingest: {n} trainers {statistics.median(rates):,.0f} points/s", flush=True)
        return {"durability": durability, "rows": rows}
    finally:
        server.stop()


# ---- 3. list vs sessions --------------------------------------------------------------------


def emulator_url() -> str:
    kubeconfig = yaml.safe_load(Path(RESTART[0].env["PIVOT_KUBECONFIG"]).read_text())
    return str(kubeconfig["clusters"][0]["cluster"]["server"])


async def list_total(host: str, port: int) -> int:
    _, body = await first_read(host, port, f"{API}/training/sessions?limit=1")
    return int(json.loads(body)["total"])


async def bench_list(host: str, port: int, sizes: Sizes) -> list[dict[str, Any]]:
    url = emulator_url()
    have = await list_total(host, port)  # the sessions the other curves made
    made = 0
    out = []
    for n in sizes.sessions_list:
        want = max(n, have)
        names = [f"list-{i}" for i in range(made, made + want - have)]
        t0 = time.perf_counter()
        await asyncio.to_thread(post_all, url, names)
        made += len(names)
        deadline = time.monotonic() + 300
        while (have := await list_total(host, port)) < want:
            assert time.monotonic() < deadline, f"the API's cache has {have} of {want}"
            await asyncio.sleep(0.2)
        posted = time.perf_counter() - t0
        row: dict[str, Any] = {"sessions": have, "posted_s": posted}
        for limit in (50, 1000):
            path = f"{API}/training/sessions?limit={limit}"
            await timed_gets(host, port, path, 1, 5)
            probe = await timed_gets(host, port, path, 1, 3)
            reps = int(min(200, max(30, 4000 / max(statistics.median(probe), 0.1))))
            row[f"limit_{limit}"] = stats(await timed_gets(host, port, path, 1, reps))
        out.append(row)
        print(
            f"list: {have} sessions, p99 {row['limit_50']['p99']:.2f} ms (limit 50), "
            f"{row['limit_1000']['p99']:.2f} ms (limit 1000)",
            flush=True,
        )
    return out


# ---- 4. operator vs sessions ----------------------------------------------------------------


def unscheduled(url: str) -> int:
    """Sessions whose Schedulable condition is False: their timeout has been handled."""
    with httpx.Client(base_url=url, timeout=120) as client:
        items = client.get(CR_URL).json()["items"]
    return sum(
        1
        for item in items
        for c in (item.get("status") or {}).get("conditions") or []
        if c.get("type") == "Schedulable" and c.get("status") == "False"
    )


def bench_operator(sizes: Sizes) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp, LocalPlatform(data_dir=tmp, with_api=False) as p:
        assert p.operator is not None
        watch = PodWatch(p.kube.url)
        watch.start()
        assert watch.ready.wait(10)
        time.sleep(2)  # the operator's watches are up
        pid, emu = p.operator.pid, emulator_thread_id()
        made = 0
        for n in sizes.sessions_operator:
            names = [f"scale-{i}" for i in range(made, n)]
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            post_all(p.kube.url, names)
            # Bounded: past what these cores can supervise, creation crawls (every existing
            # session's resyncs come first) and the run would never end in its budget.
            complete = watch.wait_for({f"{x}-trainer" for x in names}, sizes.operator_deadline_s)
            pods = sum(f"{x}-trainer" in watch.seen for x in names) + made
            create_cpu, create_s = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
            made = n
            settled = 0
            if sizes.operator_settle:
                # Every session past its Schedulable timeout and marked so: from here on the
                # operator does only what a waiting session costs (its daemon's resyncs).
                deadline = time.monotonic() + sizes.operator_deadline_s / 3
                while (settled := unscheduled(p.kube.url)) < n and time.monotonic() < deadline:
                    time.sleep(2)
            op0, emu0 = cpu_seconds(pid), cpu_seconds(os.getpid(), emu)
            time.sleep(sizes.operator_window_s)
            op_cpu, emu_cpu = cpu_seconds(pid) - op0, cpu_seconds(os.getpid(), emu) - emu0
            rss = psutil.Process(pid).memory_info().rss / 2**20
            minutes = sizes.operator_window_s / 60
            out.append(
                {
                    "sessions": n,
                    "window_s": sizes.operator_window_s,
                    "cpu_s": op_cpu,
                    "emulator_cpu_s": emu_cpu,
                    "cpu_ms_per_session_minute": op_cpu / n / minutes * 1000,
                    "rss_mib": rss,
                    "created": len(names),
                    "create_s": create_s,
                    "pods": pods,  # < sessions: the deadline passed first
                    "settled": settled,  # sessions marked Schedulable=False before the window
                    "settle_wanted": sizes.operator_settle,
                    "create_cpu_ms_per_session": create_cpu / len(names) * 1000,
                }
            )
            print(
                f"operator: {n} sessions, {op_cpu:.2f} s CPU in {sizes.operator_window_s:.0f} s, "
                f"RSS {rss:.0f} MiB; {len(names)} created in {create_s:.1f} s, pods {pods}, "
                f"settled {settled}",
                flush=True,
            )
            if not complete:
                print(f"operator: saturated at {n} sessions ({pods} pods): no larger size")
                break
    return out


# ---- 5. SSE vs clients ----------------------------------------------------------------------


async def bench_sse_curve(
    host: str, port: int, r: redis.Redis, sids: list[str], sizes: Sizes
) -> list[dict[str, Any]]:
    out = []
    for clients in sizes.sse_clients:
        # bench_api's SSE part: 20 XADDs 0.25 s apart, each timed to every client.
        await bench_sse(host, port, r, sids.pop(), clients)
        got = API_RESULTS.values
        row = {
            "clients": clients,
            "p99": got[("SSE XADD -> client", "p99")].value,
            "median": got[("SSE XADD -> client", "median")].value,
            "n": clients * 20,
        }
        out.append(row)
        print(f"sse: {clients} clients, p99 {row['p99']:.2f} ms", flush=True)
    return out


# ---- 6. memory vs points --------------------------------------------------------------------


async def bench_memory(store: SeriesStore, sizes: Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {"steps": [], "epochs": []}
    for kind, lengths in (("steps", sizes.memory_steps), ("epochs", sizes.memory_epochs)):
        for n in lengths:
            sid = await store.get(kind, n)
            stream_key = keys.steps_stream(sid) if kind == "steps" else keys.metrics_stream(sid)
            # SAMPLES 0: exact sizes, every entry and field counted.
            stream = int(store.r.memory_usage(stream_key, samples=0) or 0)
            rollups = int(store.r.memory_usage(keys.series_rollups(sid), samples=0) or 0)
            out[kind].append({"points": n, "stream_bytes": stream, "rollups_bytes": rollups})
    return out


# ---- the run --------------------------------------------------------------------------------


@contextmanager
def phase(data: dict[str, Any], name: str) -> Iterator[None]:
    """Wall time of a part and the load average going in: the machine is shared, and a
    curve measured while others ran is read knowing it."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    yield
    data.setdefault("phases", {})[name] = {"s": time.perf_counter() - t0, "load_before": load}


async def api_phase(args: argparse.Namespace, sizes: Sizes, data: dict[str, Any]) -> None:
    only = args.only
    with api_server(WORKERS) as (host, port, r):
        url = RESTART[0].env["PIVOT_REDIS_URL"]
        store = SeriesStore(r, url)
        wanted = 0
        if "history" in only:
            wanted += len(sizes.steps) + len(sizes.epochs)
        if "sse" in only:
            wanted += len(sizes.sse_clients)
        sids = await create_sessions(host, port, wanted) if wanted else []
        if "history" in only:
            with phase(data, "history"):
                data["history"] = await bench_history(host, port, store, sids, sizes)
        if "memory" in only:
            with phase(data, "memory"):
                data["memory"] = await bench_memory(store, sizes)
        if "sse" in only:
            with phase(data, "sse"):
                data["sse"] = await bench_sse_curve(host, port, r, sids, sizes)
        if "list" in only:
            with phase(data, "list"):
                data["list"] = await bench_list(host, port, sizes)


async def memory_only(sizes: Sizes, data: dict[str, Any]) -> None:
    server = RedisServer().start()
    try:
        r = redis.Redis.from_url(server.url)
        data["memory"] = await bench_memory(SeriesStore(r, server.url), sizes)
        r.close()
    finally:
        server.stop()


def raise_nofile() -> None:
    """Thousands of SSE connections: this process holds one per client, and the API's workers
    (which inherit the limit) one each too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65_536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    only = args.only
    data: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{py_platform.machine()}, {os.cpu_count()} cores, Python "
        f"{py_platform.python_version()}",
        "load_before": list(os.getloadavg()),
        "quick": bool(args.quick),
    }
    raise_nofile()
    t0 = time.perf_counter()
    if "ingest" in only:
        with phase(data, "ingest"):
            data["ingest"] = bench_ingest(sizes)  # first: it forks, and no thread may run yet
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if only & {"history", "sse", "list"}:
        asyncio.run(api_phase(args, sizes, data))
    elif "memory" in only:
        with phase(data, "memory"):
            asyncio.run(memory_only(sizes, data))
    if "history" in only and not args.skip_mlflow:
        with phase(data, "mlflow"):
            data["mlflow"] = mlflow_history(sizes.mlflow, sizes.mlflow_cold)
    if "operator" in only:
        with phase(data, "operator"):
            data["operator"] = bench_operator(sizes)
    data["wall_s"] = time.perf_counter() - t0
    data["load_after"] = list(os.getloadavg())
    return data


def print_tables(data: dict[str, Any]) -> None:
    if "history" in data:
        rows = []
        for kind in ("steps", "epochs"):
            for h in data["history"][kind]:
                c, w = h["cold"], h["warm"]
                rows.append(
                    [
                        f"PIVOT, {kind}",
                        f"{h['points']:,}",
                        f"{c['median']:.2f} / {c['p99']:.2f} (n {c['n']})",
                        f"{w['median']:.2f} / {w['p99']:.2f} (n {w['n']})",
                        f"{h['write_s']:.1f} s / {h['rollups_s']:.1f} s",
                    ]
                )
        for h in data.get("mlflow", []):
            c, w = h["cold"], h["warm"]
            rows.append(
                [
                    "MLflow bulk-interval, steps",
                    f"{h['points']:,}",
                    f"{c['median']:.2f} / {c['p99']:.2f} (n {c['n']})",
                    f"{w['median']:.2f} / {w['p99']:.2f} (n {w['n']})",
                    "",
                ]
            )
        table(
            f"History, max_points={MAX_POINTS}: median / p99 (ms)",
            ["reader, series", "points", "cold", "warm", "write / rollups"],
            rows,
        )
    if "ingest" in data:
        table(
            f"Ingest: step points through RecordSink, one Redis ({data['ingest']['durability']})",
            ["trainers", "points in all", "points/s (median)", "runs", "Redis CPU s / M points"],
            [
                [
                    x["trainers"],
                    f"{x['points']:,}",
                    f"{x['points_per_s']:,.0f}",
                    ", ".join(f"{v:,.0f}" for v in x["runs"]),
                    f"{x['redis_cpu_s_per_million']:.3f}",
                ]
                for x in data["ingest"]["rows"]
            ],
        )
    if "list" in data:
        table(
            "GET /training/sessions, 1 client: median / p99 (ms)",
            ["sessions", "limit 50", "limit 1000", "posted + cached in"],
            [
                [
                    f"{x['sessions']:,}",
                    f"{x['limit_50']['median']:.2f} / {x['limit_50']['p99']:.2f}",
                    f"{x['limit_1000']['median']:.2f} / {x['limit_1000']['p99']:.2f}",
                    f"{x['posted_s']:.1f} s",
                ]
                for x in data["list"]
            ],
        )
    if "operator" in data:
        table(
            "Operator with N sessions waiting (pods never bound)",
            [
                "sessions",
                "CPU ms / session-minute",
                "window CPU (operator / emulator)",
                "operator cores busy",
                "RSS (MiB)",
                "CPU ms / session created",
                "created (wall)",
                "pods / Schedulable=False at the window",
            ],
            [
                [
                    f"{x['sessions']:,}",
                    f"{x['cpu_ms_per_session_minute']:.2f}",
                    f"{x['cpu_s']:.2f} / {x['emulator_cpu_s']:.2f} s in {x['window_s']:.0f} s",
                    f"{x['cpu_s'] / x['window_s']:.2f}",
                    f"{x['rss_mib']:.0f}",
                    f"{x['create_cpu_ms_per_session']:.1f}",
                    f"{x['created']:,} in {x['create_s']:.0f} s",
                    f"{x['pods']:,} / {x['settled']:,}" if x["settle_wanted"] else "",
                ]
                for x in data["operator"]
            ],
        )
    if "sse" in data:
        table(
            "SSE XADD -> event at the client (ms)",
            ["clients", "median", "p99", "n"],
            [
                [f"{x['clients']:,}", f"{x['median']:.2f}", f"{x['p99']:.2f}", x["n"]]
                for x in data["sse"]
            ],
        )
    if "memory" in data:
        rows = []
        for kind in ("steps", "epochs"):
            for m in data["memory"][kind]:
                n, s, ro = m["points"], m["stream_bytes"], m["rollups_bytes"]
                rows.append(
                    [
                        kind,
                        f"{n:,}",
                        f"{s / 1e6:.3f}",
                        f"{ro / 1e6:.3f}",
                        f"{s / n:.1f}",
                        f"{ro / n:.2f}",
                        f"{100 * ro / s:.1f}%",
                    ]
                )
        table(
            "Redis memory of one session's series (MEMORY USAGE, SAMPLES 0)",
            [
                "stream",
                "points",
                "stream MB",
                "rollups MB",
                "stream B/point",
                "rollups B/point",
                "rollups / stream",
            ],
            rows,
        )


# ---- the picture ----------------------------------------------------------------------------

PIVOT_STYLE = {"color": "tab:blue"}
MLFLOW_STYLE = {"color": "tab:red", "linestyle": "--", "marker": "s"}


def human(value: float, _pos: object = None) -> str:
    """Tick labels as a reader says them: 10k, 1M, 0.5, 20."""
    for size, unit in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def readable(ax: Any) -> None:
    """Plain numbers on log axes, every measured x ticked (a few sizes a curve), and the
    minor ticks between decades labelled only at 2 and 5."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    def minor(value: float, pos: object = None) -> str:
        lead = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
        return human(value) if round(lead) in (2, 5) else ""

    xs = sorted({x for line in ax.get_lines() for x in line.get_xdata()})
    if ax.get_xscale() == "log" and xs:
        ax.set_xticks(xs, [human(x) for x in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())
    if ax.get_yscale() == "log":
        ax.yaxis.set_major_formatter(FuncFormatter(human))
        ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def draw(data: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def history(ax: Any) -> None:
        for kind, color in (("steps", "tab:blue"), ("epochs", "tab:green")):
            rows = data["history"][kind]
            xs = [h["points"] for h in rows]
            ax.plot(
                xs,
                [h["cold"]["p99"] for h in rows],
                marker="o",
                color=color,
                label=f"PIVOT {kind}, cold",
            )
            ax.plot(
                xs,
                [h["warm"]["p99"] for h in rows],
                marker="^",
                color=color,
                linestyle=":",
                label=f"PIVOT {kind}, warm",
            )
        if data.get("mlflow"):
            rows = data["mlflow"]
            xs = [h["points"] for h in rows]
            ax.plot(xs, [h["cold"]["p99"] for h in rows], label="MLflow, cold", **MLFLOW_STYLE)
            ax.plot(
                xs,
                [h["warm"]["p99"] for h in rows],
                label="MLflow, warm",
                color="tab:red",
                linestyle="-.",
                marker="D",
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="series length (points)",
            ylabel="p99 latency (ms)",
            title=f"History, max_points={MAX_POINTS}",
        )
        ax.legend(fontsize=7)

    def ingest(ax: Any) -> None:
        rows = data["ingest"]["rows"]
        xs = [x["trainers"] for x in rows]
        mid = [x["points_per_s"] / 1e6 for x in rows]
        # The bars span every run at that size: on shared cores the spread is the story too.
        low = [m - min(x["runs"]) / 1e6 for m, x in zip(mid, rows, strict=True)]
        high = [max(x["runs"]) / 1e6 - m for m, x in zip(mid, rows, strict=True)]
        ax.errorbar(
            xs,
            mid,
            yerr=[low, high],
            marker="o",
            capsize=3,
            **PIVOT_STYLE,
            label="all trainers together (median, range of runs)",
        )
        ax.set(
            xscale="log",
            xlabel="concurrent trainers (processes)",
            ylabel="step points/s (millions)",
            title="Ingest into one Redis (AOF everysec)",
        )
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)

    def listing(ax: Any) -> None:
        rows = data["list"]
        xs = [x["sessions"] for x in rows]
        for limit, marker, color in ((50, "o", "tab:blue"), (1000, "^", "tab:orange")):
            ax.plot(
                xs,
                [x[f"limit_{limit}"]["p99"] for x in rows],
                marker=marker,
                color=color,
                label=f"limit={limit}, p99",
            )
            # The median beside it: a p99 of ~100 reads on shared cores is a noisy figure.
            ax.plot(
                xs,
                [x[f"limit_{limit}"]["median"] for x in rows],
                marker=marker,
                color=color,
                linestyle=":",
                label=f"limit={limit}, median",
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="sessions (CRs)",
            ylabel="latency (ms)",
            title="GET /training/sessions",
        )
        ax.legend(fontsize=7)

    def operator_cpu(ax: Any) -> None:
        rows = data["operator"]
        xs = [x["sessions"] for x in rows]
        ax.plot(
            xs,
            [x["cpu_ms_per_session_minute"] for x in rows],
            marker="o",
            label="waiting (resync window)",
            **PIVOT_STYLE,
        )
        ax.plot(
            xs,
            [x["create_cpu_ms_per_session"] for x in rows],
            marker="^",
            color="tab:purple",
            label="per session created",
        )
        behind(ax, [x["cpu_ms_per_session_minute"] for x in rows])
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="sessions",
            ylabel="operator CPU (ms)",
            title="Operator CPU per session(-minute)",
        )
        ax.legend(fontsize=7)

    def behind(ax: Any, ys: list[float]) -> None:
        """Mark sizes where the operator had not caught up when its window began."""
        for x, y in zip(data["operator"], ys, strict=True):
            if x["settle_wanted"] and min(x["pods"], x["settled"]) < x["sessions"]:
                ax.annotate(
                    "behind",
                    (x["sessions"], y),
                    fontsize=7,
                    color="tab:red",
                    xytext=(-30, 6),
                    textcoords="offset points",
                )

    def operator_rss(ax: Any) -> None:
        rows = data["operator"]
        xs = [x["sessions"] for x in rows]
        ax.plot(xs, [x["rss_mib"] for x in rows], marker="o", label="RSS", **PIVOT_STYLE)
        behind(ax, [x["rss_mib"] for x in rows])
        ax.set(
            xscale="log",
            xlabel="sessions",
            ylabel="RSS (MiB)",
            title="Operator RSS and cores busy (waiting)",
        )
        ax.set_ylim(bottom=0)
        busy = ax.twinx()
        busy.plot(
            xs,
            [x["cpu_s"] / x["window_s"] for x in rows],
            marker="^",
            linestyle="--",
            color="tab:gray",
            label="cores busy (right)",
        )
        busy.set_ylabel("operator CPU (cores)")
        busy.set_ylim(0, 2)  # the machine's two cores
        lines = ax.get_lines() + busy.get_lines()
        ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="upper left")

    def sse(ax: Any) -> None:
        rows = data["sse"]
        xs = [x["clients"] for x in rows]
        ax.plot(xs, [x["p99"] for x in rows], marker="o", label="p99", **PIVOT_STYLE)
        ax.plot(
            xs,
            [x["median"] for x in rows],
            marker="^",
            linestyle=":",
            label="median",
            color="tab:blue",
        )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="SSE clients of one session",
            ylabel="XADD -> client (ms)",
            title="Live stream fan-out",
        )
        ax.legend(fontsize=7)

    def memory(ax: Any) -> None:
        for kind, color in (("steps", "tab:blue"), ("epochs", "tab:green")):
            rows = data["memory"][kind]
            xs = [m["points"] for m in rows]
            ax.plot(
                xs,
                [(m["stream_bytes"] + m["rollups_bytes"]) / 1e6 for m in rows],
                marker="o",
                color=color,
                label=f"{kind}: stream + rollups",
            )
            ax.plot(
                xs,
                [m["rollups_bytes"] / 1e6 for m in rows],
                marker="^",
                color=color,
                linestyle=":",
                label=f"{kind}: rollups",
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="points in the series",
            ylabel="Redis memory (MB)",
            title="Redis memory per session",
        )
        ax.legend(fontsize=7)

    def per_point(ax: Any) -> None:
        for kind, color in (("steps", "tab:blue"), ("epochs", "tab:green")):
            rows = data["memory"][kind]
            xs = [m["points"] for m in rows]
            ax.plot(
                xs,
                [m["stream_bytes"] / m["points"] for m in rows],
                marker="o",
                color=color,
                label=f"{kind}: stream",
            )
            ax.plot(
                xs,
                [m["rollups_bytes"] / m["points"] for m in rows],
                marker="^",
                color=color,
                linestyle=":",
                label=f"{kind}: rollups",
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="points in the series",
            ylabel="bytes per point",
            title="Redis memory per point",
        )
        ax.legend(fontsize=7)

    drawers: list[tuple[str, Callable[[Any], None]]] = [
        ("history", history),
        ("ingest", ingest),
        ("list", listing),
        ("operator", operator_cpu),
        ("operator", operator_rss),
        ("sse", sse),
        ("memory", memory),
        ("memory", per_point),
    ]
    panels = [fn for name, fn in drawers if name in data]
    cols = min(4, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 4.2 * nrows), squeeze=False)
    for ax, fn in zip(axes.flat, panels, strict=False):
        fn(ax)
        readable(ax)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    load = " ".join(f"{x:.1f}" for x in data["load_before"])
    fig.suptitle(
        f"PIVOT cost curves, {data['date']}, {data['machine']} (shared; load average before "
        f"{load}){', QUICK sizes' if data.get('quick') else ''}",
        fontsize=10,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", default=",".join(CURVES), help=",".join(CURVES))
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--png", type=Path, help="default bench/scaling.png (--quick: a temp file)")
    parser.add_argument("--plot", type=Path, help="redraw from this --json file, measure nothing")
    add_check_args(parser)
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    unknown = args.only - set(CURVES)
    if unknown:
        parser.error(f"unknown curves {sorted(unknown)}; choose from {','.join(CURVES)}")
    if "history" in args.only and not args.skip_mlflow and not args.plot:
        # As bench/_mlflow.py finds it: found missing now, not after the PIVOT curves.
        mlflow_bin = os.environ.get("PIVOT_BENCH_MLFLOW") or str(
            Path(sys.executable).parent / "mlflow"
        )
        if not Path(mlflow_bin).exists():
            parser.error(f"no mlflow at {mlflow_bin}: set PIVOT_BENCH_MLFLOW or --skip-mlflow")
    png = args.png
    if png is None:
        png = (
            Path(tempfile.gettempdir()) / "pivot-scaling-quick.png"
            if args.quick
            else BENCH / "scaling.png"
        )
    data = json.loads(args.plot.read_text()) if args.plot else measure(args)
    print_tables(data)
    draw(data, png)
    print(f"\nPNG: {png}")
    if args.json and not args.plot:
        args.json.write_text(json.dumps(data, indent=1))
    if "phases" in data:
        table(
            "Parts: wall time, and the load average going in (the machine is shared)",
            ["part", "wall (s)", "load average (1 min)"],
            [[k, f"{v['s']:.0f}", f"{v['load_before']:.1f}"] for k, v in data["phases"].items()],
        )
    if "wall_s" in data:
        print(f"total wall time: {data['wall_s']:.0f} s ({data['wall_s'] / 60:.1f} min)")
    # No target is stated for these curves (bench/_targets.py): nothing to check yet.
    Results("bench_scaling").finish(argparse.Namespace(json=None, check=args.check))


if __name__ == "__main__":
    main()
