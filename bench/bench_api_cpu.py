"""Server CPU per `GET /api/v1/training/sessions/{id}`, in-process and single-threaded.

    .venv/bin/python bench/bench_api_cpu.py                 # N=5000, bench_api.py's settings
    .venv/bin/python bench/bench_api_cpu.py --auth --profile 25
    .venv/bin/python bench/bench_api_cpu.py --concurrency 200   # C requests in flight
    .venv/bin/python bench/bench_api_cpu.py --check             # exit 1 on a missed target

Starts Redis, moto's S3 and the Kubernetes emulator (in a thread, idle while timing), builds
the app with `create_app`, runs its lifespan, creates one session, then calls the ASGI app
directly (a minimal scope/receive/send, no HTTP parsing, no client) N times in a row. Reports
µs per request of wall time and of this thread's CPU time, and with `--profile K` a cProfile
top-K list (cumulative) of another N calls. Settings as bench/bench_api.py runs the server:
log level WARNING, rate limiter off, keys off; `--auth` turns API keys on, `--ratelimit` the
limiter (each call then waits for Redis: compare its CPU column, not its wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _targets import Results, add_check_args  # bench/ is the script's directory
from pydantic import SecretStr

from pivot_api.app import create_app
from pivot_api.settings import Settings
from pivot_local.kube import run_emulator_in_thread
from pivot_local.services import RedisServer, S3Server

CRD = Path(__file__).resolve().parents[1] / "crds" / "trainingsessions.pivot.dev.yaml"
API = "/api/v1"
KEY = "bench-key-0123456789abcdef"


def scope_for(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """One request through the whole ASGI stack; (status, body)."""
    status = 0
    body = b""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    # A fresh scope each time, as a server makes one per request (middlewares write into it).
    await app(scope_for(path, list(headers)), receive, send)
    return status, body


async def run(args: argparse.Namespace, results: Results) -> None:
    redis_server = RedisServer().start()
    s3 = S3Server().start()
    configs = Path(tempfile.mkdtemp(prefix="pivot-bench-cpu-"))
    (configs / "train.yaml").write_text("epochs: 10\n")
    try:
        with run_emulator_in_thread(crds=[CRD]) as emu:
            kubeconfig = emu.write_kubeconfig(configs / "kubeconfig")
            settings = Settings(
                redis_url=redis_server.url,
                s3_endpoint=s3.endpoint,
                s3_bucket=s3.bucket,
                s3_access_key=s3.access_key,
                s3_secret_key=s3.secret_key,
                s3_region=s3.region,
                kubeconfig=str(kubeconfig),
                configs_dir=configs,
                log_level="WARNING",
                background_jobs=False,  # nothing else running in this loop while timing
                rate_limit_enabled=args.ratelimit,
                rate_limits="1000000/minute",
                auth_enabled=args.auth,
                api_keys=SecretStr(KEY),
            )
            await measure(create_app(settings), args, results)
    finally:
        redis_server.stop()
        s3.stop()


async def measure(app: Any, args: argparse.Namespace, results: Results) -> None:
    import httpx

    headers = [(b"host", b"api"), (b"accept", b"*/*"), (b"user-agent", b"bench")]
    if args.auth:
        headers.append((b"authorization", f"Bearer {KEY}".encode()))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=dict(headers)
        ) as http,
    ):
        resp = await http.post(
            f"{API}/training/sessions", json={"config": {"epochs": 10}, "session_name": "cpu"}
        )
        resp.raise_for_status()
        sid = resp.json()["session_id"]
        path = f"{API}/training/sessions/{sid}"
        for _ in range(100):  # until this worker's watch cache has it
            status, body = await call(app, path, headers)
            if status == 200:
                break
            await asyncio.sleep(0.05)
        assert status == 200, (status, body)
        for _ in range(500):  # warm-up
            await call(app, path, headers)

        async def serial(count: int) -> None:
            for _ in range(count):
                await call(app, path, headers)

        rounds: list[tuple[float, float]] = []
        for _ in range(args.rounds):
            wall0, cpu0 = time.perf_counter(), time.thread_time()
            # C requests in flight at once, as C clients keep a worker busy: reads that
            # arrive together share one read-barrier round trip to Redis.
            per = args.n // args.concurrency
            await asyncio.gather(*(serial(per) for _ in range(args.concurrency)))
            wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
            done = per * args.concurrency
            rounds.append((wall / done * 1e6, cpu / done * 1e6))
        walls = [w for w, _ in rounds]
        cpus = [c for _, c in rounds]
        print(
            f"GET session, N={args.n} x {args.rounds} rounds, {args.concurrency} in flight, "
            f"auth={args.auth}, "
            f"ratelimit={args.ratelimit}, body {len(body)} bytes"
        )
        print(f"  wall µs/request: median {statistics.median(walls):.1f}  min {min(walls):.1f}")
        print(f"  CPU  µs/request: median {statistics.median(cpus):.1f}  min {min(cpus):.1f}")
        if not (args.auth or args.ratelimit):  # the targets are for bench_api's settings
            results.record(
                f"server CPU per GET session, {args.concurrency} in flight",
                "median",
                statistics.median(cpus),
            )
        missing = f"{API}/training/sessions/no-such-session"
        status, body = await call(app, missing, headers)
        print(f"  missing session: {status} {body.decode()}")

        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.n):
                await call(app, path, headers)
            profiler.disable()
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("cumulative").print_stats(args.profile)
            stats.sort_stats("tottime").print_stats(args.profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=int, default=1, metavar="C", help="requests in flight at once"
    )
    parser.add_argument("--auth", action="store_true", help="API keys on")
    parser.add_argument("--ratelimit", action="store_true", help="rate limiter on (Redis)")
    parser.add_argument("--profile", type=int, default=0, metavar="K", help="cProfile top K")
    add_check_args(parser)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = Results("bench_api_cpu")
    asyncio.run(run(args, results))
    results.finish(args)


if __name__ == "__main__":
    main()
