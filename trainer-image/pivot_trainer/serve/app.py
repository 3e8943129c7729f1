"""The HTTP server: routes, request parsing, readiness and draining, the process's lifecycle.

States: loading (/ready 503; the port is open at once so that probes and /healthz answer
while the checkpoint loads), ready, draining (SIGTERM: /ready 503 at once; predictions are
still answered for the lame-duck period, PIVOT_SERVE_LAME_DUCK_S, 3 s, while the pod leaves its
Service's endpoints; then new ones get 503, those in progress finish, and the process exits 0;
a second signal ends the lame-duck period at once).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import BodyPartReader, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pivot_trainer.serve import images as imgs
from pivot_trainer.serve.batcher import Batcher, Done
from pivot_trainer.serve.errors import (
    EXIT_FAILED,
    EXIT_OK,
    BadRequest,
    CheckpointError,
    InvalidImage,
    PayloadTooLarge,
    ServeError,
    Unavailable,
    UnsupportedMediaType,
)
from pivot_trainer.serve.metrics import ServeMetrics
from pivot_trainer.serve.settings import ServeSettings

if TYPE_CHECKING:
    from pivot_trainer.serve.model import Predictor

RETRY_AFTER_S = 1
# Requests with more than this many bytes or images are decoded (and masks with more pixels
# encoded) on a worker thread: on the event loop they would stall every other request for the
# decode's duration (measured: 0.03 ms a 48x48 npy, 0.9 ms a 4 MiB npy, 3.3 ms a 512x512
# 16-bit PNG); below it the thread hop costs more than the decode.
OFFLOAD_BYTES = 256 * 1024
OFFLOAD_IMAGES = 16
OFFLOAD_PIXELS = 1 << 18
# A draining server gives requests in progress this long; the pod's grace period is 30 s
# (with the lame-duck period, at most 4 s).
DRAIN_TIMEOUT_S = 25.0
_CHUNK = 1 << 16
_OUTCOMES = {200: "ok", 400: "invalid", 413: "too_large", 415: "unsupported", 503: "unavailable"}


class State(StrEnum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"


class Server:
    """What the handlers share: settings, state, metrics, the batcher once loaded."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.state = State.LOADING
        self.metrics = ServeMetrics(settings.model, settings.checkpoint_id, settings.sha256)
        self.batcher: Batcher | None = None
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()  # a second signal: no lame-duck period
        self.lame_duck_until = 0.0  # monotonic; predictions are answered until then
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        # Decoding big bodies and encoding big masks; the model has its own thread.
        self.io_pool = ThreadPoolExecutor(2, thread_name_prefix="pivot-serve-io")

    def drain(self) -> None:
        if self.state is State.DRAINING:
            self.lame_duck_until = 0.0
            self.hurry.set()
        else:
            if self.state is State.READY:
                self.lame_duck_until = time.monotonic() + self.settings.lame_duck_s
            print(
                f"pivot-serve: SIGTERM: not ready; serving {self.settings.lame_duck_s:g} s more "
                "while the pod leaves its endpoints, then draining",
                file=sys.stderr,
                flush=True,
            )
        self.state = State.DRAINING
        self.metrics.ready.set(0)
        self.stop.set()

    def accepting(self) -> bool:
        """Whether a new prediction is answered: ready, or draining in the lame-duck period."""
        if self.batcher is None:
            return False
        return self.state is State.READY or (
            self.state is State.DRAINING and time.monotonic() < self.lame_duck_until
        )

    def identity(self) -> dict[str, Any]:
        s = self.settings
        return {"model": s.model, "checkpoint_id": s.checkpoint_id, "sha256": s.sha256}

    # -- routes ----------------------------------------------------------------------------

    async def ready(self, _: web.Request) -> web.Response:
        body = {"status": self.state.value, **self.identity()}
        if self.state is State.READY:
            return web.json_response(body)
        return web.json_response(body, status=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "state": self.state.value})

    async def metrics_text(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def predict(self, request: web.Request) -> web.Response:
        t0 = time.perf_counter()
        self.in_flight += 1
        self.idle.clear()
        self.metrics.in_flight.inc()
        status = 500
        try:
            response = await self._predict(request, t0)
            status = response.status
            return response
        except ServeError as exc:
            status = exc.status
            raise
        finally:
            self.metrics.requests.labels(_OUTCOMES.get(status, "error")).inc()
            self.metrics.latency.observe(time.perf_counter() - t0)
            self.metrics.in_flight.dec()
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.set()

    async def _predict(self, request: web.Request, t0: float) -> web.Response:
        batcher = self.batcher
        if batcher is None or not self.accepting():
            raise Unavailable(
                f"the model server is {self.state.value}", {"state": self.state.value}
            )
        raw_images, want_mask, size = await self._read(request)
        loop = asyncio.get_running_loop()
        max_pixels = self.settings.max_pixels
        if size > OFFLOAD_BYTES or len(raw_images) > OFFLOAD_IMAGES:
            arrays = await loop.run_in_executor(self.io_pool, _decode_all, raw_images, max_pixels)
        else:
            arrays = _decode_all(raw_images, max_pixels)
        done: list[Done] = await asyncio.gather(*(batcher.submit(a, want_mask) for a in arrays))
        if want_mask and sum(a.size for a in arrays) > OFFLOAD_PIXELS:
            encoded = await loop.run_in_executor(self.io_pool, _encode_masks, done)
        else:
            encoded = _encode_masks(done) if want_mask else [None] * len(done)
        predictions = []
        for d, mask in zip(done, encoded, strict=True):
            item: dict[str, Any] = {
                "shape": list(d.prediction.shape),
                "candidates": d.prediction.candidates,
            }
            if mask is not None:
                item["mask_png"] = mask
            predictions.append(item)
        body = {
            **self.identity(),
            "predictions": predictions,
            "timing": {
                "queue_ms": round(max(d.queue_s for d in done) * 1e3, 3),
                "inference_ms": round(max(d.inference_s for d in done) * 1e3, 3),
                "total_ms": round((time.perf_counter() - t0) * 1e3, 3),
                "batch_size": max(d.batch_size for d in done),
            },
        }
        return web.json_response(body)

    # -- request bodies --------------------------------------------------------------------

    async def _read(self, request: web.Request) -> tuple[list[tuple[bytes, str | None]], bool, int]:
        """([(image bytes, stated format)], return_mask, body bytes) from a JSON, multipart
        or raw image body; PayloadTooLarge past max_bytes (before reading, when the length
        is declared)."""
        limit = self.settings.max_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise _too_large(length, limit)
        want_mask = _flag(request.query.get("return_mask"), "return_mask")
        ctype = request.content_type
        if ctype == "multipart/form-data":
            parts, size, form_mask = await _read_multipart(request, limit)
            return parts, want_mask or form_mask, size
        raw = await _read_body(request, limit)
        if ctype == "application/json":
            parts, body_mask = _parse_json(raw)
            return parts, want_mask or body_mask, len(raw)
        if ctype in ("image/png", "application/x-npy", "application/octet-stream"):
            return [(raw, None)], want_mask, len(raw)
        raise UnsupportedMediaType(
            f"unsupported Content-Type {ctype!r}",
            {
                "content_type": ctype,
                "accepted": ["multipart/form-data", "application/json", "image/png"],
            },
        )


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is over {limit} bytes", {"size": size, "max_bytes": limit}
    )


def _flag(raw: Any, name: str) -> bool:
    if raw is None or raw is False or raw is True:
        return bool(raw)
    if isinstance(raw, str) and raw.lower() in {"true", "1", "yes", "false", "0", "no", ""}:
        return raw.lower() in {"true", "1", "yes"}
    raise BadRequest(f"{name} must be true or false, got {raw!r}", {"field": name})


async def _read_body(request: web.Request, limit: int) -> bytes:
    buf = bytearray()
    while chunk := await request.content.read(_CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise _too_large(len(buf), limit)
    return bytes(buf)


async def _read_multipart(
    request: web.Request, limit: int
) -> tuple[list[tuple[bytes, str | None]], int, bool]:
    """(the `file` parts, bytes read, a `return_mask` form field's value)."""
    reader = await request.multipart()
    parts: list[tuple[bytes, str | None]] = []
    total = 0
    want_mask = False
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart bodies are not accepted", {"field": "file"})
        buf = bytearray()
        while chunk := await part.read_chunk(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise _too_large(total, limit)
            buf += chunk
        if part.name == "file":
            parts.append((bytes(buf), None))
        elif part.name == "return_mask":
            want_mask = _flag(buf.decode(errors="replace").strip(), "return_mask")
    if not parts:
        raise BadRequest("a multipart body needs one or more `file` parts", {"field": "file"})
    return parts, total, want_mask


def _parse_json(raw: bytes) -> tuple[list[tuple[bytes, str | None]], bool]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", {"field": "body"}) from None
    if not isinstance(body, dict) or not isinstance(body.get("images"), list):
        raise BadRequest("the body needs `images`: a list of {data, format}", {"field": "images"})
    if not body["images"]:
        raise BadRequest("`images` is empty", {"field": "images"})
    parts: list[tuple[bytes, str | None]] = []
    for i, item in enumerate(body["images"]):
        if not isinstance(item, dict) or not isinstance(item.get("data"), str):
            raise BadRequest(
                f"images[{i}] needs `data`, base64 text", {"field": f"images[{i}].data"}
            )
        fmt = item.get("format")
        if fmt is not None and fmt not in imgs.FORMATS:
            raise InvalidImage(
                f"images[{i}].format must be png or npy, got {fmt!r}",
                {"index": i, "reason": "format", "formats": list(imgs.FORMATS)},
            )
        try:
            data = base64.b64decode(item["data"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidImage(
                f"images[{i}].data is not base64", {"index": i, "reason": "base64"}
            ) from None
        parts.append((data, fmt))
    return parts, _flag(body.get("return_mask", False), "return_mask")


def _decode_all(raw_images: list[tuple[bytes, str | None]], max_pixels: int) -> list[np.ndarray]:
    return [
        imgs.decode(data, fmt=fmt, max_pixels=max_pixels, index=i)
        for i, (data, fmt) in enumerate(raw_images)
    ]


def _encode_masks(done: list[Done]) -> list[str | None]:
    return [
        None
        if d.prediction.mask is None
        else base64.b64encode(imgs.encode_mask(d.prediction.mask)).decode()
        for d in done
    ]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as {"error": {code, message, details}}, 503s with Retry-After."""
    try:
        return await handler(request)
    except ServeError as exc:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
        return web.json_response(exc.body(), status=exc.status, headers=headers)
    except web.HTTPException as exc:  # 404, 405 from the router
        if exc.status < 400:
            raise
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status, "BAD_REQUEST")
        body = {"error": {"code": code, "message": exc.reason, "details": {}}}
        return web.json_response(body, status=exc.status)
    except Exception:
        traceback.print_exc()
        body = {"error": {"code": "INTERNAL_ERROR", "message": "inference failed", "details": {}}}
        return web.json_response(body, status=500)


def build_app(server: Server) -> web.Application:
    # client_max_size bounds nothing here (bodies are read by hand, counted), but aiohttp
    # checks it in request.read(); keep it equal to the real limit.
    app = web.Application(middlewares=[envelope], client_max_size=server.settings.max_bytes)
    app.router.add_get("/ready", server.ready)
    app.router.add_get("/healthz", server.healthz)
    app.router.add_get("/metrics", server.metrics_text)
    app.router.add_post("/predict", server.predict)
    return app


def _load(settings: ServeSettings) -> Predictor:
    # torch is imported here, on the model thread: the port is open and /healthz answers
    # during the seconds that takes.
    from pivot_trainer.serve.model import load

    return load(settings)


async def serve(settings: ServeSettings) -> int:
    """Open the port, load and warm up the model, serve until SIGTERM, drain; the exit code."""
    loop = asyncio.get_running_loop()
    server = Server(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.drain)
    runner = web.AppRunner(build_app(server), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        print(
            f"pivot-serve: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr
        )
        await runner.cleanup()
        return EXIT_FAILED
    # The bound address (PIVOT_SERVE_PORT=0 takes a free port; tests read it from here).
    host, port = runner.addresses[0][:2]
    print(f"pivot-serve: listening on {host}:{port}, loading", flush=True)
    # One inference thread: the load runs there too, so the model's thread-local settings
    # (intra-op threads) are the ones it serves with.
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="pivot-serve-model")
    loading = loop.run_in_executor(model_thread, _load, settings)
    stopping = asyncio.ensure_future(server.stop.wait())
    either: list[asyncio.Future[Any]] = [loading, stopping]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    try:
        if not loading.done():  # SIGTERM while loading: nothing to drain
            return EXIT_OK
        try:
            predictor = loading.result()
        except CheckpointError as exc:
            print(f"pivot-serve: {exc}", file=sys.stderr, flush=True)
            return exc.exit_code
        except Exception:  # e.g. out of memory in the warm-up: a crash, which is retried
            traceback.print_exc()
            print("pivot-serve: loading failed", file=sys.stderr, flush=True)
            return EXIT_FAILED
        if server.state is State.DRAINING:
            return EXIT_OK
        server.batcher = Batcher(
            predictor.run,
            model_thread,
            max_batch_size=settings.max_batch_size,
            max_delay_s=settings.max_delay_ms / 1e3,
            metrics=server.metrics,
        )
        server.batcher.start()
        server.state = State.READY
        server.metrics.ready.set(1)
        print("pivot-serve: ready", flush=True)
        await stopping
        # Not ready, still answering (the lame-duck period), unless a second signal came.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                server.hurry.wait(), max(0.0, server.lame_duck_until - time.monotonic())
            )
        server.lame_duck_until = 0.0
        # Draining: new requests say 503; let the ones in progress finish.
        try:
            await asyncio.wait_for(server.idle.wait(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            print(f"pivot-serve: {server.in_flight} requests still running", file=sys.stderr)
        print("pivot-serve: drained", flush=True)
        return EXIT_OK
    finally:
        stopping.cancel()
        await runner.cleanup()
        if server.batcher is not None:
            await server.batcher.stop()
        server.io_pool.shutdown(wait=False)
        model_thread.shutdown(wait=False, cancel_futures=True)
