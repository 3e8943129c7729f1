"""Checkpoints: S3 is the truth. Every read lists the manifests under `checkpoints/`; nothing
is indexed in this process, so any worker (or a restarted one) answers the same.

Write order (upload): model object (multipart, streamed), then manifest, the commit point.
Delete order: manifest, then object, then the `latest` pointer if it named this checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request

from pivot_api.checkpoints.schemas import Checkpoint, CheckpointList, CheckpointUploaded
from pivot_api.checkpoints.uploads import FileSink, ParsedUpload, discard, parse_upload
from pivot_api.errors import (
    NotFoundError,
    PayloadTooLargeError,
    PivotError,
    ServiceUnavailableError,
    ValidationError,
)
from pivot_api.sessions.service import SessionService, iso_z
from pivot_schema import storage
from pivot_schema.storage import CheckpointManifest

log = logging.getLogger(__name__)

# Multipart framing and the small form fields, on top of the file itself.
_FORM_OVERHEAD = 1024 * 1024
_DOWNLOAD_CHUNK = 1024 * 1024
_STEP = re.compile(r"_e\d+s(?P<step>\d+)$")
# Manifests are small; fetching them concurrently is what keeps a list fast.
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="pivot-s3")


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}


def _s3_down(exc: Exception) -> ServiceUnavailableError:
    return ServiceUnavailableError("the checkpoint store is unavailable", {"reason": str(exc)})


def _mb(size: int) -> float:
    return round(size / (1024 * 1024), 3)


def _step(ckpt_id: str) -> int:
    match = _STEP.search(ckpt_id)
    return int(match.group("step")) if match else 0


def _order(m: CheckpointManifest) -> tuple[int, int, str]:
    return m.epoch, _step(m.checkpoint_id), m.created_at


def _not_found(ckpt_id: str) -> NotFoundError:
    return NotFoundError(f"checkpoint not found: {ckpt_id}", {"checkpoint_id": ckpt_id})


@dataclass(frozen=True)
class Policy:
    """Which metric makes a checkpoint the best, and whether lower or higher wins."""

    metric: str = "val_loss"
    mode: str = "min"


def policy_of(obj: dict[str, Any] | None) -> Policy:
    """The session's checkpoint metric and mode: spec.checkpoint, else the config's
    `checkpoint` section, else the trainer's defaults (val_loss; min for losses)."""
    spec = (obj or {}).get("spec", {})
    sources = [spec.get("checkpoint") or {}, (spec.get("config") or {}).get("checkpoint") or {}]
    metric = next((s["metric"] for s in sources if isinstance(s, dict) and s.get("metric")), None)
    mode = next((s["mode"] for s in sources if isinstance(s, dict) and s.get("mode")), None)
    metric = str(metric or "val_loss")
    if mode not in ("min", "max"):
        mode = "min" if metric.endswith("loss") else "max"
    return Policy(metric, mode)


def _value(m: CheckpointManifest, metric: str) -> float | None:
    value = m.metrics.get(metric)
    if value is None and m.metric_name == metric:
        value = m.metric_value
    return value if value is not None and math.isfinite(value) else None


def best_of(manifests: list[CheckpointManifest], policy: Policy) -> str | None:
    """The one best checkpoint of a session: the best metric value (ties go to the earlier
    checkpoint, as the trainer's "strictly better" does); with no values, the newest."""
    if not manifests:
        return None
    ordered = sorted(manifests, key=_order)
    scored = [(v, m) for m in ordered if (v := _value(m, policy.metric)) is not None]
    if not scored:
        return ordered[-1].checkpoint_id
    sign = 1.0 if policy.mode == "min" else -1.0
    best = min(scored, key=lambda vm: sign * vm[0])  # min() keeps the first of equals
    return best[1].checkpoint_id


class _MultipartSink(FileSink):
    """An S3 multipart upload fed chunk by chunk; holds at most one part in memory."""

    def __init__(self, s3: Any, bucket: str, key: str, part_bytes: int) -> None:
        self._s3, self._bucket, self.key, self._part_bytes = s3, bucket, key, part_bytes
        self._buf = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None

    async def start(self) -> None:
        created = await asyncio.to_thread(
            self._s3.create_multipart_upload,
            Bucket=self._bucket,
            Key=self.key,
            ContentType="application/octet-stream",
        )
        self._upload_id = created["UploadId"]

    async def _flush(self, data: bytes) -> None:
        number = len(self._parts) + 1
        part = await asyncio.to_thread(
            self._s3.upload_part,
            Bucket=self._bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"PartNumber": number, "ETag": part["ETag"]})

    async def write(self, data: bytes) -> None:
        self._buf.extend(data)
        while len(self._buf) >= self._part_bytes:
            part = bytes(self._buf[: self._part_bytes])
            del self._buf[: self._part_bytes]
            await self._flush(part)

    async def finish(self) -> None:
        if self._buf or not self._parts:
            await self._flush(bytes(self._buf))
            self._buf.clear()
        await asyncio.to_thread(
            self._s3.complete_multipart_upload,
            Bucket=self._bucket,
            Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        self._upload_id = None

    async def abort(self) -> None:
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            await asyncio.to_thread(
                self._s3.abort_multipart_upload,
                Bucket=self._bucket,
                Key=self.key,
                UploadId=upload_id,
            )
        except (ClientError, BotoCoreError):
            log.warning("could not abort multipart upload of %s", self.key, exc_info=True)


@dataclass
class Download:
    manifest: CheckpointManifest
    file_name: str
    url: str | None = None
    chunks: AsyncIterator[bytes] | None = None


class CheckpointService:
    def __init__(
        self,
        s3: Any,
        bucket: str,
        sessions: SessionService | None,
        *,
        max_upload_bytes: int,
        part_bytes: int,
        redirect_downloads: bool = False,
        presign_expiry_s: int = 900,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._sessions = sessions
        self._max_upload_bytes = max_upload_bytes
        self._part_bytes = part_bytes
        self._redirect = redirect_downloads
        self._presign_expiry_s = presign_expiry_s

    # ---- S3 reads (blocking; run in threads) -----------------------------------------------

    def _manifest_keys(self, prefix: str) -> list[str]:
        found = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                parts = obj["Key"].split("/")
                if (
                    len(parts) == 4
                    and parts[0] == storage.ROOT
                    and parts[3] == storage.MANIFEST_FILE
                ):
                    found.append(obj["Key"])
        return found

    def _read_manifest_key(self, key: str) -> CheckpointManifest | None:
        try:
            raw = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                return None  # deleted between the list and the read
            raise
        try:
            manifest = CheckpointManifest.model_validate_json(raw)
        except PydanticValidationError:
            log.warning("skipping unreadable checkpoint manifest %s", key)
            return None
        _, sid, ckpt_id, _ = key.split("/")
        if manifest.session_id != sid or manifest.checkpoint_id != ckpt_id:
            log.warning("skipping checkpoint manifest %s: it names another checkpoint", key)
            return None
        return manifest

    def _manifests(self, prefix: str) -> list[CheckpointManifest]:
        read = _POOL.map(self._read_manifest_key, self._manifest_keys(prefix))
        return [m for m in read if m is not None]

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ClientError as exc:
            if _missing(exc):
                raise
            raise _s3_down(exc) from exc
        except BotoCoreError as exc:
            raise _s3_down(exc) from exc

    async def manifest(self, ckpt_id: str) -> CheckpointManifest:
        sid = storage.parse_checkpoint_id(ckpt_id)
        if sid is None:
            raise _not_found(ckpt_id)
        manifest = await self._call(self._read_manifest_key, storage.manifest_key(sid, ckpt_id))
        if manifest is None:
            raise _not_found(ckpt_id)
        return manifest

    async def _policy(self, session_id: str) -> Policy:
        if self._sessions is None:
            return Policy()
        try:
            return policy_of(await self._sessions.lookup(session_id))
        except PivotError:
            return Policy()  # a deleted session's checkpoints are still listed

    # ---- list ------------------------------------------------------------------------------

    def _to_model(self, m: CheckpointManifest, policy: Policy, best: str | None) -> Checkpoint:
        return Checkpoint(
            checkpoint_id=m.checkpoint_id,
            session_id=m.session_id,
            epoch=m.epoch,
            step=_step(m.checkpoint_id),
            metric_name=policy.metric,
            metric_value=_value(m, policy.metric),
            file_size_mb=_mb(m.size_bytes),
            file_path=f"s3://{self._bucket}/{m.object_key}",
            is_best=m.checkpoint_id == best,
            created_at=m.created_at,
            sha256=m.sha256,
        )

    async def list(self, *, session_id: str | None, limit: int) -> CheckpointList:
        """Checkpoints newest first; is_best is computed over each session's full set."""
        prefix = storage.session_prefix(session_id) if session_id else storage.ROOT + "/"
        manifests: list[CheckpointManifest] = await self._call(self._manifests, prefix)
        by_session: dict[str, list[CheckpointManifest]] = {}
        for m in manifests:
            by_session.setdefault(m.session_id, []).append(m)
        out: list[Checkpoint] = []
        for sid, group in by_session.items():
            policy = await self._policy(sid)
            best = best_of(group, policy)
            out.extend(self._to_model(m, policy, best) for m in group)
        out.sort(key=lambda c: (c.created_at, c.epoch, c.step, c.checkpoint_id), reverse=True)
        return CheckpointList(checkpoints=out[:limit])

    # ---- download --------------------------------------------------------------------------

    async def download(self, ckpt_id: str) -> Download:
        manifest = await self.manifest(ckpt_id)
        name = manifest.file_name or f"{ckpt_id}.pth"
        if self._redirect:
            url = await self._call(
                self._s3.generate_presigned_url,
                "get_object",
                Params={
                    "Bucket": self._bucket,
                    "Key": manifest.object_key,
                    "ResponseContentDisposition": f'attachment; filename="{name}"',
                },
                ExpiresIn=self._presign_expiry_s,
            )
            return Download(manifest, name, url=url)
        try:
            obj = await self._call(
                self._s3.get_object, Bucket=self._bucket, Key=manifest.object_key
            )
        except ClientError as exc:
            raise NotFoundError(
                f"checkpoint file is missing: {ckpt_id}", {"checkpoint_id": ckpt_id}
            ) from exc
        return Download(manifest, name, chunks=_body_chunks(obj["Body"]))

    # ---- delete ----------------------------------------------------------------------------

    def _delete_blocking(self, m: CheckpointManifest) -> None:
        sid, ckpt_id = m.session_id, m.checkpoint_id
        self._s3.delete_object(Bucket=self._bucket, Key=storage.manifest_key(sid, ckpt_id))
        # The object key comes from a manifest; only ever delete inside this checkpoint.
        if m.object_key.startswith(storage.checkpoint_prefix(sid, ckpt_id)):
            self._s3.delete_object(Bucket=self._bucket, Key=m.object_key)
        self._s3.delete_object(Bucket=self._bucket, Key=storage.model_key(sid, ckpt_id))
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=storage.latest_key(sid))["Body"]
            latest = body.read().decode(errors="replace").strip()
        except ClientError as exc:
            if not _missing(exc):
                raise
            return
        if latest != ckpt_id:
            return
        # Point `latest` at the newest committed checkpoint left, or drop it.
        remaining = [
            r for r in self._manifests(storage.session_prefix(sid)) if r.checkpoint_id != ckpt_id
        ]
        if remaining:
            newest = max(remaining, key=_order).checkpoint_id
            self._s3.put_object(
                Bucket=self._bucket,
                Key=storage.latest_key(sid),
                Body=newest.encode(),
                ContentType="text/plain",
            )
        else:
            self._s3.delete_object(Bucket=self._bucket, Key=storage.latest_key(sid))

    async def delete(self, ckpt_id: str) -> None:
        manifest = await self.manifest(ckpt_id)
        await self._call(self._delete_blocking, manifest)

    # ---- upload ----------------------------------------------------------------------------

    async def _open_sink(self, session_id: str, ckpt_id: str) -> _MultipartSink:
        sink = _MultipartSink(
            self._s3, self._bucket, storage.model_key(session_id, ckpt_id), self._part_bytes
        )
        try:
            await sink.start()
        except (ClientError, BotoCoreError) as exc:
            raise _s3_down(exc) from exc
        return sink

    async def upload(self, request: Request) -> CheckpointUploaded:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self._max_upload_bytes + _FORM_OVERHEAD:
            raise PayloadTooLargeError(
                "the checkpoint file is larger than the upload limit",
                {"field": "file", "max_bytes": self._max_upload_bytes},
            )
        target: dict[str, str] = {}

        async def open_sink(fields: dict[str, str], _name: str) -> FileSink | None:
            # Fields sent before the file (as the schema orders them) let the bytes go
            # straight to their final S3 key; otherwise they are spooled to disk first.
            if "session_id" not in fields or "epoch" not in fields:
                return None
            session_id, epoch = await self._check_target(fields)
            target["checkpoint_id"] = _new_id(session_id, epoch)
            return await self._open_sink(session_id, target["checkpoint_id"])

        upload = await parse_upload(
            request.headers.get("content-type", ""),
            request.stream(),
            max_file_bytes=self._max_upload_bytes,
            open_sink=open_sink,
        )
        try:
            return await self._commit(upload, target.get("checkpoint_id"))
        finally:
            await discard(upload)

    async def _check_target(self, fields: dict[str, str]) -> tuple[str, int]:
        session_id = fields.get("session_id", "")
        if not session_id:
            raise ValidationError("session_id is required", {"field": "session_id"})
        raw_epoch = fields.get("epoch", "").strip()
        if not re.fullmatch(r"\d{1,9}", raw_epoch):
            raise ValidationError(
                "epoch must be a non-negative integer", {"field": "epoch", "value": raw_epoch}
            )
        if self._sessions is None:
            raise ServiceUnavailableError("the API is not ready: sessions are not available")
        await self._sessions.lookup(session_id)  # 404 for an unknown session
        return session_id, int(raw_epoch)

    async def _commit(self, upload: ParsedUpload, ckpt_id: str | None) -> CheckpointUploaded:
        if upload.file_name is None:
            raise ValidationError(
                "a checkpoint file (form field `file`) is required", {"field": "file"}
            )
        session_id, epoch = await self._check_target(upload.fields)
        metrics = _parse_metrics(upload.fields.get("metrics"))
        if upload.size == 0:
            raise ValidationError("the checkpoint file is empty", {"field": "file"})
        sink = upload.sink
        if not isinstance(sink, _MultipartSink):
            assert upload.spool is not None
            ckpt_id = _new_id(session_id, epoch)
            sink = upload.sink = await self._open_sink(session_id, ckpt_id)
            spool = upload.spool
            spool.seek(0)
            while chunk := await asyncio.to_thread(spool.read, self._part_bytes):
                await sink.write(chunk)
        assert ckpt_id is not None
        if storage.parse_checkpoint_id(ckpt_id) != session_id:
            raise ValidationError(
                "session_id was sent twice with different values", {"field": "session_id"}
            )
        try:
            await sink.finish()
        except (ClientError, BotoCoreError) as exc:
            raise _s3_down(exc) from exc
        upload.sink = None  # completed: nothing left to abort
        policy = await self._policy(session_id)
        value = metrics.get(policy.metric)
        now = iso_z()
        manifest = CheckpointManifest(
            checkpoint_id=ckpt_id,
            session_id=session_id,
            epoch=epoch,
            metrics=metrics,
            metric_name=policy.metric,
            metric_value=value,
            is_best=False,  # computed on read, over the session's whole set
            size_bytes=upload.size,
            sha256=upload.sha256,
            object_key=sink.key,
            created_at=now,
            file_name=upload.file_name,
        )
        try:
            await self._call(
                self._s3.put_object,
                Bucket=self._bucket,
                Key=storage.manifest_key(session_id, ckpt_id),
                Body=manifest.model_dump_json().encode(),
                ContentType="application/json",
            )
        except PivotError:
            await asyncio.to_thread(self._delete_orphan, sink.key)
            raise
        return CheckpointUploaded(
            checkpoint_id=ckpt_id, file_size_mb=_mb(upload.size), uploaded_at=now
        )

    def _delete_orphan(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError):
            log.warning("could not remove uncommitted checkpoint object %s", key, exc_info=True)


def _new_id(session_id: str, epoch: int) -> str:
    # `u` + random: never collides with the trainer's own ids (e00005, e00005s000139), and the
    # trainer's resume logic, which only follows its own ids, never picks an uploaded file.
    return f"{storage.checkpoint_id(session_id, epoch)}u{secrets.token_hex(4)}"


def _parse_metrics(raw: str | None) -> dict[str, float | None]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValidationError("metrics must be a JSON object", {"field": "metrics"}) from exc
    if not isinstance(value, dict):
        raise ValidationError("metrics must be a JSON object", {"field": "metrics"})
    out: dict[str, float | None] = {}
    for name, v in value.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise ValidationError(
                "every metric must be a number or null", {"field": f"metrics.{name}"}
            )
        out[name] = None if v is None or not math.isfinite(float(v)) else float(v)
    return out


async def _body_chunks(body: Any) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(body.read, _DOWNLOAD_CHUNK):
            yield chunk
    finally:
        body.close()
