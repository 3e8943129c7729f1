"""Training sessions: TrainingSession CRs written to the API server, read from the cache."""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from pivot_api.consistency import ReadMarks
from pivot_api.errors import (
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    UpstreamError,
    ValidationError,
)
from pivot_api.kube import Obj, SessionCache, SessionWriter, rv_of
from pivot_api.sessions.configs import load_config_file, resolve_config_path, validate_config
from pivot_api.sessions.schemas import (
    BestCheckpointInfo,
    CreateSessionRequest,
    CreateSessionResponse,
    SessionCondition,
    SessionDetail,
    SessionList,
    SessionSummary,
    StartSessionResponse,
    StopSessionResponse,
)
from pivot_schema.crd import (
    ANNOTATION_STARTED_AT,
    ANNOTATION_STOPPED_AT,
    Resources,
    SessionStatus,
    Toleration,
    TrainingSessionSpec,
    new_training_session,
    session_status,
)

ID_PREFIX = "sess-"
_ID_ALPHABET = string.ascii_lowercase + string.digits
# A CR name is a DNS-1123 subdomain; anything else cannot be a session id.
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

# When the API created the CR, to the microsecond: creationTimestamp has only seconds,
# which cannot order sessions created in the same second (the list is newest first).
CREATED_AT_ANNOTATION = "pivot.dev/created-at"

_FINISHED = frozenset({SessionStatus.COMPLETED, SessionStatus.FAILED})


def new_session_id() -> str:
    return ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def iso_z(value: datetime | None = None) -> str:
    """ISO-8601 UTC with a Z, the one timestamp form of the API."""
    value = value or datetime.now(UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _norm_ts(value: Any) -> str | None:
    if not value:
        return None
    text = str(value)
    try:
        return iso_z(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return text


def sort_newest_first(objs: list[Obj]) -> list[Obj]:
    return sorted(objs, key=_sort_key, reverse=True)


def _sort_key(obj: Obj) -> tuple[datetime, str]:
    stamp = created_at(obj)
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
    except ValueError:
        when = None
    return when or datetime.min.replace(tzinfo=UTC), obj["metadata"]["name"]


def created_at(obj: Obj) -> str | None:
    meta = obj.get("metadata", {})
    return _norm_ts((meta.get("annotations") or {}).get(CREATED_AT_ANNOTATION)) or _norm_ts(
        meta.get("creationTimestamp")
    )


def status_of(obj: Obj) -> SessionStatus:
    return session_status(obj)


def _asked(obj: Obj, annotation: str) -> str | None:
    return _norm_ts(((obj.get("metadata") or {}).get("annotations") or {}).get(annotation))


def _epochs(obj: Obj) -> tuple[int, int, float]:
    spec, status = obj.get("spec", {}), obj.get("status") or {}
    total = status.get("totalEpochs") or (spec.get("config") or {}).get("epochs") or 0
    current = status.get("currentEpoch") or 0
    progress = status.get("progress")
    if progress is None:
        progress = min(current / total, 1.0) if total else 0.0
    return int(current), int(total), float(progress)


def to_detail(obj: Obj) -> SessionDetail:
    spec, status = obj.get("spec", {}), obj.get("status") or {}
    current, total, progress = _epochs(obj)
    state = status_of(obj)
    # Until the operator writes its own times, those the start and stop answered with.
    stopped_at = _norm_ts(status.get("stoppedAt"))
    if stopped_at is None and state == SessionStatus.STOPPED:
        stopped_at = _asked(obj, ANNOTATION_STOPPED_AT)
    return SessionDetail(
        session_id=obj["metadata"]["name"],
        session_name=spec.get("sessionName"),
        status=state,
        config=spec.get("config") or {},
        tags=spec.get("tags") or [],
        created_at=created_at(obj),
        started_at=_norm_ts(status.get("startedAt")) or _asked(obj, ANNOTATION_STARTED_AT),
        stopped_at=stopped_at,
        completed_at=_norm_ts(status.get("completedAt")),
        current_epoch=current,
        total_epochs=total,
        progress=progress,
        latest_metrics=status.get("latestMetrics") or {},
        message=status.get("message"),
        best_checkpoint=_best(status.get("bestCheckpoint")),
        conditions=[
            SessionCondition(
                type=str(c.get("type", "")),
                status=str(c.get("status", "Unknown")),
                reason=c.get("reason"),
                message=c.get("message"),
                last_transition_time=_norm_ts(c.get("lastTransitionTime")),
            )
            for c in status.get("conditions") or []
            if isinstance(c, dict)
        ],
    )


def _best(raw: Any) -> BestCheckpointInfo | None:
    if not isinstance(raw, dict) or not raw.get("id"):
        return None
    value = raw.get("value")
    return BestCheckpointInfo(
        checkpoint_id=str(raw["id"]),
        epoch=raw.get("epoch"),
        metric=raw.get("metric"),
        value=value if isinstance(value, int | float) and math.isfinite(value) else None,
    )


def to_summary(obj: Obj) -> SessionSummary:
    spec = obj.get("spec", {})
    current, total, _ = _epochs(obj)
    return SessionSummary(
        session_id=obj["metadata"]["name"],
        session_name=spec.get("sessionName"),
        status=status_of(obj),
        created_at=created_at(obj),
        current_epoch=current,
        total_epochs=total,
        tags=spec.get("tags") or [],
    )


def spec_of(request: CreateSessionRequest, config: dict[str, Any]) -> TrainingSessionSpec:
    """The CR spec a create asks for (suspended: the API's sessions start on `start`). The
    request's snake_case fields become the CR's camelCase ones."""
    resources = request.resources
    return TrainingSessionSpec(
        session_name=request.session_name,
        tags=request.tags,
        suspend=True,
        config=config,
        resources=Resources(**resources.model_dump(exclude_none=True)) if resources else None,
        node_selector=request.node_selector,
        tolerations=[Toleration(**t.model_dump(exclude_none=True)) for t in request.tolerations]
        if request.tolerations is not None
        else None,
        replicas=request.replicas,
    )


def _upstream(exc: ApiException, doing: str) -> UpstreamError:
    return UpstreamError(
        f"Kubernetes API error while {doing}", {"status": exc.status, "reason": exc.reason}
    )


class SessionService:
    def __init__(
        self,
        cache: SessionCache,
        writer: SessionWriter,
        configs_dir: Path,
        *,
        sync_timeout_s: float = 10.0,
        marks: ReadMarks | None = None,
    ) -> None:
        self._cache = cache
        self._writer = writer
        self._configs_dir = configs_dir
        self._sync_timeout_s = sync_timeout_s
        # Without marks (no Redis configured), reads are monotonic per worker only.
        self._marks = marks
        # session id -> (resourceVersion, its SessionDetail as JSON)
        self._detail_json: dict[str, tuple[str, bytes]] = {}
        self._sorted: tuple[int, list[Obj]] | None = None  # (cache version, newest first)

    # ---- reads -----------------------------------------------------------------------------

    async def _ready(self) -> None:
        if self._cache.synced:  # the common case, without wait_for's task per request
            return
        if not await self._cache.wait_synced(self._sync_timeout_s):
            raise ServiceUnavailableError(
                "the session cache has not synced with Kubernetes yet",
                {"reason": self._cache.last_error},
            )

    async def lookup(self, session_id: str) -> Obj:
        """The session's CR, from the cache.

        A miss is confirmed with one API-server read: another worker may have created the
        session an instant ago and this worker's watch may not have delivered it yet.
        """
        _check_id(session_id)
        await self._ready()
        obj = self._cache.get(session_id)
        if obj is None:
            obj = await self._fresh(session_id)
        if obj is None:
            raise NotFoundError(f"session not found: {session_id}", {"session_id": session_id})
        return obj

    async def _fresh(self, session_id: str) -> Obj | None:
        try:
            return await self._writer.get(session_id)
        except ApiException as exc:
            raise _upstream(exc, "reading the session") from exc

    async def current(self, session_id: str) -> Obj:
        """The session's CR as this API may show it now: never older than what any worker
        or replica has already shown a client (see pivot_api.consistency). What a session's
        state is read from; `lookup` only asks whether it exists."""
        _check_id(session_id)
        await self._ready()
        covered = await self._marks.read() if self._marks is not None else None
        obj = self._cache.get(session_id)
        if obj is None:
            # Not here (yet): the API server says. What it answers is shown from now on.
            obj = await self._fresh(session_id)
            if obj is not None and self._marks is not None:
                await self._marks.shown(obj)
        if obj is None:
            raise NotFoundError(f"session not found: {session_id}", {"session_id": session_id})
        if self._marks is not None:
            await self._marks.cover(covered, rv_of(obj))
        return obj

    def _newest_first(self) -> list[Obj]:
        """The cache's sessions, newest first, sorted once per change of the cache (a list
        request sorted 10,000 sessions, parsing each timestamp, every time: 34 ms)."""
        version = self._cache.version
        if self._sorted is None or self._sorted[0] != version:
            self._sorted = (version, sort_newest_first(self._cache.all()))
        return self._sorted[1]

    async def catch_up(self) -> int | None:
        """Before reading the cache for a list: wait until it holds everything any worker has
        shown. Returns the mark to pass to `shown_all` once the list is read."""
        await self._ready()
        return await self._marks.read() if self._marks is not None else None

    async def shown_all(self, covered: int | None) -> None:
        """A list read from the cache is about to be shown: raise the shared mark to it."""
        if self._marks is not None:
            await self._marks.cover(covered, self._cache.seen)

    async def wait_changed(self, within_s: float) -> None:
        """Return when any session changes in this worker's cache, or after `within_s`."""
        await self._cache.wait_moved(within_s)

    async def get(self, session_id: str) -> SessionDetail:
        return to_detail(await self.current(session_id))

    async def get_json(self, session_id: str) -> bytes:
        """`get` as JSON, serialised once per resourceVersion of the CR (a CR changes a few
        times an epoch; a dashboard reads it many times a second)."""
        obj = await self.current(session_id)
        version = obj.get("metadata", {}).get("resourceVersion")
        hit = self._detail_json.get(session_id)
        if hit is not None and version is not None and hit[0] == version:
            return hit[1]
        body = to_detail(obj).model_dump_json().encode()
        if version is not None:
            if len(self._detail_json) > 2 * self._cache.size + 1000:
                self._detail_json.clear()  # bound it: deleted sessions leave entries behind
            self._detail_json[session_id] = (str(version), body)
        return body

    async def list(self, *, limit: int, offset: int, status: SessionStatus | None) -> SessionList:
        covered = await self.catch_up()
        objs = self._newest_first()
        await self.shown_all(covered)
        if status is not None:
            objs = [o for o in objs if status_of(o) == status]
        page = objs[offset : offset + limit]
        return SessionList(
            sessions=[to_summary(o) for o in page], total=len(objs), limit=limit, offset=offset
        )

    # ---- writes ----------------------------------------------------------------------------

    async def create(self, request: CreateSessionRequest) -> CreateSessionResponse:
        if request.config_path is not None:
            path = await asyncio.to_thread(
                resolve_config_path, self._configs_dir, request.config_path
            )
            raw = await asyncio.to_thread(load_config_file, path, request.config_path)
        else:
            raw = request.config or {}
        config = validate_config(raw, config_path=request.config_path)
        spec = spec_of(request, config)
        now = iso_z()
        for _ in range(3):  # a name collision is astronomically rare; retry with a new id
            body = new_training_session(new_session_id(), spec, namespace=self._writer.namespace)
            body["metadata"]["annotations"] = {CREATED_AT_ANNOTATION: now}
            try:
                obj = await self._writer.create(body)
                if self._marks is not None:
                    await self._marks.shown(obj)
                break
            except ApiException as exc:
                if exc.status == 409:
                    continue
                if exc.status in (400, 422):
                    raise ValidationError(
                        "Kubernetes rejected the session", {"reason": _reason(exc)}
                    ) from exc
                raise _upstream(exc, "creating the session") from exc
        else:
            raise ConflictError("could not find a free session id")
        return CreateSessionResponse(
            session_id=obj["metadata"]["name"],
            status=status_of(obj),
            created_at=created_at(obj) or now,
            config=obj.get("spec", {}).get("config") or {},
        )

    async def _transition(self, session_id: str, *, run: bool, now: str) -> None:
        """Set spec.suspend to `not run` unless the session already heads there or is over.

        The decision follows spec.suspend (what was last asked) and terminal phases, not the
        phase alone: between a start and the operator's next reconcile the phase still says
        created/stopped, and a stop in that window must work (and a second start must not).
        Where the operator has caught up this is exactly "start from created or stopped, stop
        from running or pending".

        The CR is read fresh from the API server (this worker's cache may lag a write made
        through another), and the patch carries that resourceVersion, so a concurrent change
        makes the server answer 409 and we look again.
        """
        _check_id(session_id)
        verb = "start" if run else "stop"
        for _ in range(5):
            try:
                obj = await self._writer.get(session_id)
            except ApiException as exc:
                raise _upstream(exc, "reading the session") from exc
            if obj is None:
                raise NotFoundError(f"session not found: {session_id}", {"session_id": session_id})
            current = status_of(obj)
            wants_run = not obj.get("spec", {}).get("suspend")
            if current in _FINISHED or wants_run == run:
                raise ConflictError(
                    _conflict_message(run=run, current=current),
                    {"session_id": session_id, "status": current.value},
                )
            asked = ANNOTATION_STARTED_AT if run else ANNOTATION_STOPPED_AT
            patch = {
                "metadata": {
                    "resourceVersion": obj["metadata"]["resourceVersion"],
                    "annotations": {asked: now},
                },
                "spec": {"suspend": not run},
            }
            try:
                patched = await self._writer.patch(session_id, patch)
                if self._marks is not None:
                    await self._marks.shown(patched)
                return
            except ApiException as exc:
                if exc.status == 409:
                    continue
                if exc.status == 404:
                    raise NotFoundError(
                        f"session not found: {session_id}", {"session_id": session_id}
                    ) from exc
                raise _upstream(exc, f"trying to {verb} the session") from exc
        raise ConflictError(
            f"session {session_id} kept changing; try again", {"session_id": session_id}
        )

    async def start(self, session_id: str) -> StartSessionResponse:
        now = iso_z()
        await self._transition(session_id, run=True, now=now)
        return StartSessionResponse(session_id=session_id, status="running", started_at=now)

    async def stop(self, session_id: str) -> StopSessionResponse:
        now = iso_z()
        await self._transition(session_id, run=False, now=now)
        return StopSessionResponse(session_id=session_id, status="stopped", stopped_at=now)


def _conflict_message(*, run: bool, current: SessionStatus) -> str:
    if current in _FINISHED:
        return f"session is {current.value}; it cannot be {'started' if run else 'stopped'}"
    if run:
        return "session is already running"
    if current == SessionStatus.CREATED:
        return "session is not running (it has not been started)"
    return "session is already stopped"


def _check_id(session_id: str) -> None:
    if not _DNS1123.match(session_id):
        raise NotFoundError(f"session not found: {session_id}", {"session_id": session_id})


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)
