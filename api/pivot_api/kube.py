"""Kubernetes access for the API: the client, and an informer-style cache of TrainingSessions.

Reads are served from the cache (list once, then watch from that resourceVersion), so a GET
makes no API-server call. Writes go to the API server and the object it returns is written
through into the cache, so a read right after a write on this worker sees it.

The cache keeps two resourceVersions: `position`, up to which every watch event has been
applied (what a list can promise), and `seen`, the newest version it holds of anything
(write-through included). `pivot_api.consistency` compares them with what other workers have
shown, so that no client reads an older state after a newer one.

It also keeps a bounded log of which sessions changed, at which resourceVersion
(`changes_from`), so that live list streams (pivot_api.live.feed) send only what changed and a
reconnecting client resumes from a resourceVersion instead of re-reading every session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import deque
from collections.abc import Iterable
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from pivot_api import __version__
from pivot_api.errors import ServiceUnavailableError
from pivot_api.redis_util import reraise_cancellation
from pivot_schema.crd import GROUP, PLURAL, VERSION
from pivot_schema.kubeclient import without_env_lookups

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# Changes remembered for list streams: at a few changes per session per epoch, minutes of a
# busy cluster; a client further behind gets a fresh snapshot instead.
CHANGE_LOG_MAX = 20_000


async def new_api_client(kubeconfig: str | None) -> client.ApiClient:
    """A client from the given kubeconfig, else in-cluster config, else ~/.kube/config."""
    configuration = client.Configuration()
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            await config.load_kube_config(client_configuration=configuration)
    api = without_env_lookups(client.ApiClient(configuration=configuration))
    api.user_agent = f"pivot-api/{__version__}"  # tells its requests apart (RBAC audit)
    return api



def rv_of(obj: Obj) -> int | None:
    """resourceVersion as a number: opaque by contract, but etcd's revisions (and the
    emulator's) are integers, and ordering them is what keeps stale events out."""
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", ""))
    except (TypeError, ValueError):
        return None


def _newer(candidate: Obj, current: Obj | None) -> bool:
    if current is None:
        return True
    new, old = rv_of(candidate), rv_of(current)
    return new is None or old is None or new >= old


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): re-list."""


class SessionCache:
    """Every TrainingSession in one namespace, kept current by list + watch."""

    def __init__(
        self,
        api: client.CustomObjectsApi,
        namespace: str,
        *,
        watch_timeout_s: int = 300,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._watch_timeout_s = watch_timeout_s
        self._objects: dict[str, Obj] = {}
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        # (resourceVersion, name) of every change after `horizon`, in the order applied;
        # `_changes_base` is the sequence number of its first entry.
        self._changes: deque[tuple[int, str]] = deque()
        self._changes_base = 0
        self.horizon: int | None = None
        # Every watch event up to this resourceVersion has been applied.
        self.position = 0
        # The newest resourceVersion of anything held (>= position with write-through).
        self.seen = 0
        # Set and replaced whenever the cache moves: what catch-up waiters sleep on.
        self._moved = asyncio.Event()
        # Counts the moves: what a reader keys what it derived from the objects by.
        self.version = 0

    # ---- reads -----------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, within_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), within_s)
        return self.synced

    def get(self, name: str) -> Obj | None:
        return self._objects.get(name)

    def all(self) -> list[Obj]:
        return list(self._objects.values())

    @property
    def size(self) -> int:
        return len(self._objects)

    async def wait_moved(self, within_s: float) -> None:
        """Return after the cache next changes, or after `within_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._moved.wait(), within_s)

    def _notify(self) -> None:
        self.version += 1
        self._moved.set()
        self._moved = asyncio.Event()

    def _advance(self, rv: int | None) -> None:
        """The watch (or a list) has delivered everything up to `rv`."""
        if rv is not None and rv > self.position:
            self.position = rv
            self.seen = max(self.seen, rv)
            self._notify()

    @property
    def first_change(self) -> int:
        """The sequence number of the oldest change still logged."""
        return self._changes_base

    @property
    def next_change(self) -> int:
        """The sequence number the next change will get."""
        return self._changes_base + len(self._changes)

    def changes_from(self, seq: int) -> list[tuple[int, str]] | None:
        """The changes numbered `seq` and after, as (resourceVersion, name); None when some
        of them were dropped (the reader fell too far behind: it needs a fresh snapshot).

        A change is logged before `position` passes its resourceVersion: whoever reads the
        log and then `position`, with no await between, has every change up to it."""
        if seq < self._changes_base:
            return None
        start = seq - self._changes_base
        if start == 0:
            return list(self._changes)
        return [self._changes[i] for i in range(start, len(self._changes))]

    def _log_change(self, rv: int | None, name: str) -> None:
        if self.horizon is None or rv is None:
            return  # before the first list: a reader starts from a snapshot anyway
        self._changes.append((rv, name))
        if len(self._changes) > CHANGE_LOG_MAX:
            dropped, _ = self._changes.popleft()
            self._changes_base += 1
            # Changes after `horizon` are all still here.
            self.horizon = max(self.horizon, dropped)

    async def refresh(self) -> None:
        """A fresh list from the API server, merged in: the way to catch up at once when the
        watch is slow (or stuck) and a reader must not wait longer."""
        await self._list()

    # ---- writes ----------------------------------------------------------------------------

    def upsert(self, obj: Obj) -> None:
        """Store an object unless the cache already holds a newer version of it."""
        name = obj.get("metadata", {}).get("name")
        if name and _newer(obj, self._objects.get(name)):
            self._objects[name] = obj
            rv = rv_of(obj)
            if rv is not None and rv > self.seen:
                self.seen = rv
            self._log_change(rv, name)
            self._notify()

    def remove(self, obj: Obj) -> None:
        name = obj.get("metadata", {}).get("name")
        current = self._objects.get(name) if name else None
        if current is not None and _newer(obj, current):
            del self._objects[name]
            self._log_change(rv_of(obj), name)
            self._notify()

    def _replace(self, objects: Iterable[Obj], list_rv: int | None) -> None:
        fresh = {o["metadata"]["name"]: o for o in objects}
        # Keep what was written through after the list was taken.
        for name, obj in self._objects.items():
            rv = rv_of(obj)
            if name not in fresh and rv is not None and list_rv is not None and rv > list_rv:
                fresh[name] = obj
        for obj in list(fresh.values()):
            current = self._objects.get(obj["metadata"]["name"])
            if current is not None and not _newer(obj, current):
                fresh[obj["metadata"]["name"]] = current
        if self.horizon is None:
            self.horizon = list_rv or 0  # what changed before the first list is unknown
        else:
            # A re-list (after 410 Gone) skipped the watch events in between: log what it
            # changed, deletions at the list's version (the latest they can have happened).
            for name, obj in fresh.items():
                old = self._objects.get(name)
                if old is None or rv_of(old) != rv_of(obj):
                    self._log_change(rv_of(obj), name)
            for name in self._objects.keys() - fresh.keys():
                self._log_change(list_rv, name)
        self._objects = fresh
        newest = max((r for o in fresh.values() if (r := rv_of(o)) is not None), default=0)
        self.seen = max(self.seen, newest)
        self._notify()

    # ---- the informer loop -----------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pivot-session-informer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                rv = await self._list()
                backoff = 0.2
                self.last_error = None
                while True:
                    rv = await self._watch(rv)
            except asyncio.CancelledError:
                raise
            except _Gone:
                log.info("session watch expired (410); re-listing")
                continue
            except Exception as exc:
                reraise_cancellation()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("session informer: %s; retrying in %.1fs", self.last_error, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 30.0)

    async def _list(self) -> str:
        body = await self._api.list_namespaced_custom_object(
            GROUP, VERSION, self._namespace, PLURAL, _request_timeout=30
        )
        rv = body.get("metadata", {}).get("resourceVersion", "")
        list_rv = rv_of({"metadata": {"resourceVersion": rv}})
        self._replace(body.get("items", []), list_rv)
        self._advance(list_rv)
        self._synced.set()
        return rv

    async def _watch(self, rv: str) -> str:
        """One watch request; returns the resourceVersion to resume from."""
        resp = await self._api.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self._namespace,
            PLURAL,
            watch=True,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout_s,
            _preload_content=False,
            # A silent dead connection shows up as a read timeout, then we reconnect.
            _request_timeout=aiohttp.ClientTimeout(
                sock_connect=10, sock_read=self._watch_timeout_s + 30
            ),
        )
        try:
            # Unpreloaded responses are not status-checked by the client.
            if resp.status == 410:
                raise _Gone()
            if not 200 <= resp.status < 300:
                raise ApiException(status=resp.status, reason=resp.reason)
            while True:
                line = await resp.content.readline()
                if not line:
                    return rv
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                rv = obj.get("metadata", {}).get("resourceVersion") or rv
                if kind in ("ADDED", "MODIFIED"):
                    self.upsert(obj)
                elif kind == "DELETED":
                    self.remove(obj)
                # Events come in resourceVersion order; a BOOKMARK moves the position alone.
                self._advance(rv_of(obj))
        finally:
            resp.release()


def _unreachable(exc: Exception) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "the Kubernetes API server is unreachable", {"reason": f"{type(exc).__name__}: {exc}"}
    )


class SessionWriter:
    """The write side: create and patch TrainingSessions on the API server.

    An unreachable API server is a 503; answers from it (ApiException) go to the caller.
    """

    def __init__(self, api: client.CustomObjectsApi, namespace: str, cache: SessionCache) -> None:
        self._api = api
        self._namespace = namespace
        self._cache = cache

    @property
    def namespace(self) -> str:
        return self._namespace

    async def create(self, body: Obj) -> Obj:
        try:
            obj = await self._api.create_namespaced_custom_object(
                GROUP, VERSION, self._namespace, PLURAL, body, _request_timeout=30
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(exc) from exc
        self._cache.upsert(obj)
        return obj

    async def get(self, name: str) -> Obj | None:
        """A fresh read from the API server (None when absent), written into the cache."""
        try:
            obj = await self._api.get_namespaced_custom_object(
                GROUP, VERSION, self._namespace, PLURAL, name, _request_timeout=30
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(exc) from exc
        self._cache.upsert(obj)
        return obj

    async def patch(self, name: str, patch: Obj) -> Obj:
        try:
            obj = await self._api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self._namespace,
                PLURAL,
                name,
                patch,
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                _request_timeout=30,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(exc) from exc
        self._cache.upsert(obj)
        return obj
