"""What Kubernetes knows about a session beyond its CR: its Events and its trainers' logs.

Both are read from the Kubernetes API (events, pods, pods/log), so they work the same on the
local platform's emulator and on a real cluster. The API only reads here: list pods, get
pods/log, list events (the chart's Role grants exactly these).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from pivot_api.errors import UpstreamError
from pivot_api.kube import Obj
from pivot_api.redis_util import reraise_cancellation
from pivot_api.sessions.schemas import EventObject, SessionEvent, SessionEvents
from pivot_api.sessions.service import SessionService, status_of
from pivot_schema import SessionStatus
from pivot_schema.crd import LABEL_ATTEMPT, LABEL_RANK, LABEL_SESSION

log = logging.getLogger(__name__)

TRAINER_CONTAINER = "trainer"
FINAL = frozenset({SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.STOPPED})
# How often a followed log looks again for a pod that is not there (yet, or any more).
_POLL_S = 1.0


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _event(raw: Obj) -> SessionEvent:
    series = raw.get("series") or {}
    first = raw.get("firstTimestamp") or raw.get("eventTime") or (
        raw.get("metadata") or {}
    ).get("creationTimestamp")
    last = raw.get("lastTimestamp") or series.get("lastObservedTime") or first
    involved = raw.get("involvedObject") or raw.get("regarding") or {}
    return SessionEvent(
        type=raw.get("type") or "Normal",
        reason=raw.get("reason") or "",
        message=raw.get("message") or raw.get("note") or "",
        count=_int(raw.get("count") or series.get("count")) or 1,
        first_timestamp=first,
        last_timestamp=last,
        source=(raw.get("source") or {}).get("component") or raw.get("reportingComponent"),
        object=EventObject(kind=involved.get("kind") or "", name=involved.get("name") or ""),
    )


class SessionPods:
    def __init__(self, core: client.CoreV1Api, namespace: str, sessions: SessionService) -> None:
        self._core = core
        self._namespace = namespace
        self._sessions = sessions

    async def _json(self, call: Any) -> Obj:
        """A Kubernetes read as plain JSON (the client's models cost more than the read)."""
        resp = await call
        try:
            if not 200 <= resp.status < 300:
                raise ApiException(status=resp.status, reason=resp.reason)
            return dict(json.loads(await resp.read()))
        finally:
            resp.release()

    async def _pods(self, session: Obj) -> list[Obj]:
        """The session's pods (this session's: not an earlier one's of the same name)."""
        name, uid = session["metadata"]["name"], session["metadata"].get("uid")
        try:
            body = await self._json(
                self._core.list_namespaced_pod(
                    self._namespace,
                    label_selector=f"{LABEL_SESSION}={name}",
                    _preload_content=False,
                    _request_timeout=30,
                )
            )
        except ApiException as exc:
            raise UpstreamError(
                "Kubernetes API error while listing the session's pods",
                {"status": exc.status, "reason": exc.reason},
            ) from exc
        pods = []
        for pod in body.get("items", []):
            owners = {o.get("uid") for o in pod["metadata"].get("ownerReferences") or []}
            if uid is None or not owners or uid in owners:
                pods.append(pod)
        return pods

    # ---- events ----------------------------------------------------------------------------

    async def events(self, session_id: str) -> SessionEvents:
        session = await self._sessions.current(session_id)
        names = [session_id, *(p["metadata"]["name"] for p in await self._pods(session))]
        try:
            bodies = await asyncio.gather(
                *(
                    self._json(
                        self._core.list_namespaced_event(
                            self._namespace,
                            field_selector=f"involvedObject.name={name}",
                            _preload_content=False,
                            _request_timeout=30,
                        )
                    )
                    for name in names
                )
            )
        except ApiException as exc:
            raise UpstreamError(
                "Kubernetes API error while listing the session's events",
                {"status": exc.status, "reason": exc.reason},
            ) from exc
        seen: set[str] = set()
        events = []
        for body in bodies:
            for raw in body.get("items", []):
                uid = (raw.get("metadata") or {}).get("uid") or id(raw)
                if uid not in seen:
                    seen.add(str(uid))
                    events.append(_event(raw))
        events.sort(key=lambda e: (e.last_timestamp or e.first_timestamp or ""))
        return SessionEvents(session_id=session_id, events=events)

    # ---- logs ------------------------------------------------------------------------------

    async def open_logs(self, session_id: str) -> None:
        """404 for an unknown session before a log response starts."""
        await self._sessions.lookup(session_id)

    async def logs(
        self, session_id: str, *, rank: int | None, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        """The trainer's log: one rank's, or (rank None) every rank's, each line prefixed
        `[rank N] `. Followed, it goes on through a retried attempt's new pod and ends when
        the session has ended and its pods' logs are read."""
        if rank is not None:
            async for chunk in self._rank_log(session_id, rank, tail, follow):
                yield chunk
            return
        async for chunk in self._all_ranks(session_id, tail, follow):
            yield chunk

    async def _finished(self, session_id: str) -> bool:
        with contextlib.suppress(Exception):
            return status_of(await self._sessions.current(session_id)) in FINAL
        return True  # gone (or unreadable): nothing more will be written

    async def _newest_pod(self, session_id: str, rank: int) -> Obj | None:
        session = await self._sessions.current(session_id)
        pods = [
            p
            for p in await self._pods(session)
            if _int((p["metadata"].get("labels") or {}).get(LABEL_RANK)) == rank
        ]
        if not pods:
            return None
        return max(pods, key=lambda p: _int(p["metadata"]["labels"].get(LABEL_ATTEMPT)))

    async def _rank_log(
        self, session_id: str, rank: int, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        done_uids: set[str] = set()
        while True:
            pod = await self._newest_pod(session_id, rank)
            if pod is not None and pod["metadata"].get("uid") not in done_uids:
                streamed = False
                async for chunk in self._pod_log(pod["metadata"]["name"], tail, follow):
                    streamed = True
                    yield chunk
                if not follow:
                    return
                if streamed or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    done_uids.add(str(pod["metadata"].get("uid")))
                    tail = None  # a later attempt's pod: all of it
            elif not follow:
                return
            if await self._finished(session_id):
                # One last look: a pod that ended after the previous read.
                pod = await self._newest_pod(session_id, rank)
                if pod is not None and pod["metadata"].get("uid") not in done_uids:
                    async for chunk in self._pod_log(pod["metadata"]["name"], tail, False):
                        yield chunk
                return
            await asyncio.sleep(_POLL_S)

    async def _pod_log(self, pod: str, tail: int | None, follow: bool) -> AsyncIterator[bytes]:
        params: dict[str, Any] = {"container": TRAINER_CONTAINER, "follow": follow}
        if tail is not None:
            params["tail_lines"] = tail
        try:
            # Unpreloaded, the client returns the aiohttp response (typed as str).
            resp: Any = await self._core.read_namespaced_pod_log(
                pod, self._namespace, _preload_content=False, **params
            )
        except ApiException:
            return
        try:
            if not 200 <= resp.status < 300:
                # 400: the container has not started yet; 404: the pod went meanwhile.
                return
            async for chunk in resp.content.iter_any():
                yield chunk
        except (TimeoutError, OSError) as exc:
            log.info("log stream of pod %s ended: %s", pod, exc)
        finally:
            resp.release()

    async def _all_ranks(
        self, session_id: str, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        session = await self._sessions.current(session_id)
        # Every rank the spec asks for, and any a pod has (a spec changed since).
        replicas = max(1, _int((session.get("spec") or {}).get("replicas")))
        labels = [p["metadata"].get("labels") or {} for p in await self._pods(session)]
        ranks = sorted(set(range(replicas)) | {_int(lab.get(LABEL_RANK)) for lab in labels})
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=256)

        async def pump(rank: int) -> None:
            prefix, partial = f"[rank {rank}] ".encode(), b""
            try:
                async for chunk in self._rank_log(session_id, rank, tail, follow):
                    lines = (partial + chunk).split(b"\n")
                    partial = lines.pop()
                    if lines:
                        await queue.put(b"".join(prefix + line + b"\n" for line in lines))
                if partial:
                    await queue.put(prefix + partial + b"\n")
            except Exception as exc:
                reraise_cancellation()
                log.warning("log of rank %d: %s", rank, exc)
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(pump(rank)) for rank in ranks]
        try:
            running = len(tasks)
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
