"""Webhook delivery: latency from a bus publish to the receiver, and deliveries per second.

Everything on loopback, started here: valkey, the API (`uvicorn pivot_api.app:app`, one
worker, no Kubernetes: webhooks need only Redis) with loopback allowed, and a receiver in
its own process (aiohttp) that verifies nothing and answers 204 at once, so the numbers are
the platform's: fan-out consumer, outbox, scheduler, signing, HTTP.

    .venv/bin/python bench/bench_webhooks.py [--latency 200] [--events 2000] [--endpoints 10]
        [--check] [--json PATH]

1. latency: one event at a time (each waits for the previous to arrive), publish -> receiver.
2. one endpoint: N events published at once; they go out one after another (head-of-line).
3. E endpoints subscribed to every event: N/E events published at once, E x that delivered.

Prints Markdown rows for bench/README.md, then the verdict against bench/_targets.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as py_platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _targets import Results, add_check_args  # bench/ is the script's directory
from redis.asyncio import Redis

from pivot_api.events import publish
from pivot_local.procs import free_port
from pivot_local.services import RedisServer
from pivot_schema.keys import ApiKeys

RECEIVER = """
import sys, time, json
from aiohttp import web
lat = []
async def hook(request):
    body = await request.read()
    lat.append(time.time() - json.loads(body)["data"]["sent_at"])
    return web.Response(status=204)
async def stats(request):
    return web.json_response(lat)
async def reset(request):
    lat.clear()
    return web.Response(status=204)
app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/stats", stats)
app.router.add_post("/reset", reset)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

NAMESPACE = "bench"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def received(http: httpx.AsyncClient, recv: str, count: int, timeout_s: float) -> list[float]:
    deadline = time.monotonic() + timeout_s
    while True:
        lat = (await http.get(f"{recv}/stats")).json()
        if len(lat) >= count or time.monotonic() > deadline:
            return list(lat)
        await asyncio.sleep(0.02)


async def run(
    args: argparse.Namespace, redis_url: str, api: str, recv: str, results: Results
) -> list[str]:
    redis = Redis.from_url(redis_url)
    keys = ApiKeys(NAMESPACE)
    rows: list[str] = []
    async with httpx.AsyncClient(timeout=30) as http:

        async def register(n: int) -> list[str]:
            ids = []
            for _ in range(n):
                body = {"url": f"{recv}/hook", "events": ["*"]}
                resp = await http.post(f"{api}/api/v1/webhooks", json=body)
                resp.raise_for_status()
                ids.append(resp.json()["webhook_id"])
            return ids

        async def drop(ids: list[str]) -> None:
            for wid in ids:
                await http.delete(f"{api}/api/v1/webhooks/{wid}")
            await http.post(f"{recv}/reset")

        # 1. latency, one event in flight
        ids = await register(1)
        for i in range(args.latency):
            await publish(redis, keys, "system_event", {"n": i, "sent_at": time.time()})
            await received(http, recv, i + 1, 30)
        lat = await received(http, recv, args.latency, 30)
        one = "latency publish -> receiver, one at a time"
        results.record(one, "p50", pct(lat, 0.5) * 1000)
        results.record(one, "p99", pct(lat, 0.99) * 1000)
        rows.append(
            f"| latency publish -> receiver, one at a time | p50 {pct(lat, 0.5) * 1000:.1f} ms, "
            f"p99 {pct(lat, 0.99) * 1000:.1f} ms | {len(lat)} |"
        )

        # 2. one endpoint, a burst: strictly in order, one request at a time
        await http.post(f"{recv}/reset")
        start = time.time()
        for i in range(args.events):
            await publish(redis, keys, "system_event", {"n": i, "sent_at": time.time()})
        lat = await received(http, recv, args.events, 600)
        took = time.time() - start
        results.record("events to 1 endpoint", "deliveries/s", len(lat) / took, size=len(lat))
        rows.append(
            f"| {args.events} events, 1 endpoint (in order) | {len(lat) / took:.0f} deliveries/s, "
            f"p50 latency {pct(lat, 0.5) * 1000:.0f} ms | {len(lat)} |"
        )
        await drop(ids)

        # 3. many endpoints: endpoints are delivered concurrently
        ids = await register(args.endpoints)
        per = args.events // args.endpoints
        start = time.time()
        for i in range(per):
            await publish(redis, keys, "system_event", {"n": i, "sent_at": time.time()})
        total = per * args.endpoints
        lat = await received(http, recv, total, 600)
        took = time.time() - start
        # Named for the target's 10 endpoints; another count is another measure.
        results.record(
            f"events to {args.endpoints} endpoints", "deliveries/s", len(lat) / took, size=len(lat)
        )
        rows.append(
            f"| {per} events x {args.endpoints} endpoints | {len(lat) / took:.0f} deliveries/s, "
            f"p50 latency {pct(lat, 0.5) * 1000:.0f} ms | {len(lat)} |"
        )
        await drop(ids)
    await redis.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=10)
    add_check_args(parser)
    args = parser.parse_args()
    results = Results("bench_webhooks")

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer().start()
        try:
            recv_port, api_port = free_port("127.0.0.1"), free_port("127.0.0.1")
            procs.append(subprocess.Popen([sys.executable, "-c", RECEIVER, str(recv_port)]))
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("PIVOT_")},
                "PIVOT_REDIS_URL": redis_server.url,
                "PIVOT_NAMESPACE": NAMESPACE,
                "PIVOT_KUBECONFIG": str(Path(tmp) / "none"),  # webhooks need no cluster
                "PIVOT_WEBHOOK_ALLOWLIST": '["127.0.0.0/8"]',
                "PIVOT_RATE_LIMIT_ENABLED": "false",
                "PIVOT_LOG_LEVEL": "WARNING",
            }
            api_cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "pivot_api.app:app",
                "--port",
                str(api_port),
            ]
            procs.append(
                subprocess.Popen(
                    [*api_cmd, "--log-level", "warning"], env=env, stderr=subprocess.DEVNULL
                )
            )
            recv, api = f"http://127.0.0.1:{recv_port}", f"http://127.0.0.1:{api_port}"
            wait_http(f"{recv}/stats")
            wait_http(f"{api}/api/v1/health")
            time.sleep(1.0)  # the delivery leader takes its lease
            rows = asyncio.run(run(args, redis_server.url, api, recv, results))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
            redis_server.stop()
    print(
        f"{time.strftime('%Y-%m-%d')}, {py_platform.machine()}, {os.cpu_count()} cores, "
        f"Python {py_platform.python_version()}\n"
    )
    print("| measure | value | n |\n|---|---|---|")
    print("\n".join(rows))
    results.finish(args)


if __name__ == "__main__":
    main()
