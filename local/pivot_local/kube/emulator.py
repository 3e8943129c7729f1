"""KubeEmulator: the store and HTTP server, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from .audit import RequestAudit
from .persist import Journal
from .server import ApiServer, load_manifests
from .store import Store

log = logging.getLogger("pivot.kube")


class KubeEmulator:
    """A Kubernetes API server over HTTP, in memory or kept in `data_dir`. It has no auth:
    keep it on loopback."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        crds: Sequence[Path | str] = (),
        history_limit: int = 1000,
        bookmark_interval: float = 10.0,
        event_ttl: float = 3600.0,
        data_dir: Path | str | None = None,
        fsync_interval: float = 1.0,
    ) -> None:
        """With `data_dir`, objects are kept there (persist.py) and loaded again at start."""
        self.host = host
        self.port = port
        journal = Journal(Path(data_dir)) if data_dir is not None else None
        self.store = Store(history_limit=history_limit, journal=journal)
        self.api = ApiServer(self.store, bookmark_interval=bookmark_interval)
        self.event_ttl = event_ttl
        self.fsync_interval = fsync_interval
        self.kubeconfig: Path | None = None
        self._runner: web.AppRunner | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._write_lock = asyncio.Lock()
        crd_type = self.store.types[("apiextensions.k8s.io", "customresourcedefinitions")]
        for doc in load_manifests([Path(p) for p in crds]):
            name = doc["metadata"]["name"]
            if ("", name) in self.store.objects[crd_type.key]:
                # Loaded from data_dir: take the file's version (a no-op when unchanged).
                self.store.update(crd_type, None, name, doc)
            else:
                self.store.create(crd_type, None, doc)

    @property
    def audit(self) -> RequestAudit:
        """Every (client, verb, group, resource, subresource, namespace) served so far."""
        return self.api.audit

    def set_log_source(self, source: Callable[[str, str, str], Path | None] | None) -> None:
        """Serve pods/log (`kubectl logs`) from files: source(namespace, pod, container)."""
        self.api.log_source = source

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        # handler_cancellation: a watch whose client went away is dropped at once.
        self._runner = web.AppRunner(self.api.app(), access_log=None, shutdown_timeout=1.0,
                                     handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]
        self.api.address = f"{self.host}:{self.port}"
        self._janitor = asyncio.create_task(self._expire_events())
        if self.store.journal is not None:
            self._flusher = asyncio.create_task(self._flush_journal(self.store.journal))

    async def _expire_events(self) -> None:
        # Events are the one kind clients create without bound (kopf posts one per handler).
        while True:
            await asyncio.sleep(min(60.0, self.event_ttl / 4))
            self.store.expire_events(self.event_ttl)

    async def _flush_journal(self, journal: Journal) -> None:
        # appendfsync everysec: the write path only marks objects dirty; this writes them.
        # It is never cancelled mid-write (a batch written late would overwrite newer ones):
        # stop() sets _closing and this writes the last batch and returns.
        while True:
            closing = self._closing.is_set()
            await self.flush()
            if closing:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.fsync_interval)

    async def flush(self) -> None:
        """Write and fsync every pending change now."""
        journal = self.store.journal
        if journal is None:
            return
        async with self._write_lock:
            batch = journal.take(self.store.rv, self.store.objects)
            if batch is None:
                return
            try:
                await asyncio.to_thread(journal.write, batch)
            except OSError:
                log.exception("could not write the emulator's state; will retry")
                journal.put_back(batch)

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
            self._janitor = None
        self.api.stop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._flusher is not None:  # after the server: nothing writes any more
            self._closing.set()
            await self._flusher
            self._flusher = None

    def write_kubeconfig(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "pivot-local", "cluster": {"server": self.url}}],
            "users": [{"name": "pivot-local", "user": {}}],
            "contexts": [{"name": "pivot-local", "context": {
                "cluster": "pivot-local", "user": "pivot-local", "namespace": "default"}}],
            "current-context": "pivot-local",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.kubeconfig = path
        return path


@contextlib.contextmanager
def run_emulator_in_thread(
    crds: Sequence[Path | str] = (), host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> Iterator[KubeEmulator]:
    """Run an emulator on its own event loop in a daemon thread, for sync code and tests."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            emu = KubeEmulator(host=host, port=port, crds=crds, **kwargs)
            loop.run_until_complete(emu.start())
            box["emu"] = emu
        except BaseException as e:  # surfaced to the caller's thread below
            box["error"] = e
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(emu.stop())
        loop.close()

    thread = threading.Thread(target=main, name="kube-emulator", daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        raise box["error"]
    try:
        yield box["emu"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
