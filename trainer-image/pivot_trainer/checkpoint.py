"""Checkpoints in S3, committed by their manifest.

Write order: model object, then manifest (the commit point), then the `latest` pointer.
Delete order: manifest first, so a half-deleted checkpoint never looks committed.
Resume starts from the checkpoint `latest` names and falls back to the newest other committed
one whose object verifies (size and sha256), so a corrupt latest checkpoint costs an epoch,
not the run.
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from pivot_schema import keys, storage
from pivot_schema.storage import CheckpointManifest
from pivot_trainer.runtime import Runtime

SINGLE_PUT_BYTES = 8 * 2**20  # boto3's default multipart threshold

_ORDER = re.compile(r"_e(?P<epoch>\d+)(?:s(?P<step>\d+))?$")


def order_key(ckpt_id: str) -> tuple[int, int] | None:
    """(full epochs, steps into the next) from one of our checkpoint ids, None if not ours."""
    match = _ORDER.search(ckpt_id)
    if not match:
        return None
    return int(match.group("epoch")), int(match.group("step") or 0)


@dataclass
class Committed:
    ckpt_id: str
    epoch: int
    step: int
    metric_value: float | None = None


def make_s3_client(rt: Runtime) -> Any:
    """boto3 S3 client from the env; standard retry mode rides out brief S3 hiccups."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=rt.s3_endpoint,
        region_name=rt.s3_region,
        aws_access_key_id=rt.s3_access_key,
        aws_secret_access_key=rt.s3_secret_key,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5),
    )


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"NoSuchKey", "404", "NotFound"}


class CheckpointStore:
    def __init__(self, client: Any, bucket: str, session_id: str) -> None:
        self.client = client
        self.bucket = bucket
        self.session_id = session_id

    # -- reading -------------------------------------------------------------------------

    def _get(self, key: str) -> bytes | None:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if _missing(exc):
                return None
            raise  # S3 down or denied: not a reason to silently start over

    def committed_ids(self) -> list[str]:
        """Ids of checkpoints with a manifest, oldest first."""
        found: list[tuple[tuple[int, int], str]] = []
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = storage.session_prefix(self.session_id)
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :]
                ckpt_id, _, name = rel.partition("/")
                order = order_key(ckpt_id)
                if name == storage.MANIFEST_FILE and order is not None:
                    found.append((order, ckpt_id))
        return [ckpt_id for _, ckpt_id in sorted(found)]

    def read_manifest(self, ckpt_id: str) -> CheckpointManifest | None:
        raw = self._get(storage.manifest_key(self.session_id, ckpt_id))
        if raw is None:
            return None
        try:
            manifest = CheckpointManifest.model_validate_json(raw)
        except ValidationError:
            return None
        ok = manifest.checkpoint_id == ckpt_id and manifest.session_id == self.session_id
        return manifest if ok else None

    def latest_id(self) -> str | None:
        raw = self._get(storage.latest_key(self.session_id))
        if raw is None:
            return None
        return raw.decode(errors="replace").strip() or None

    def verified(self) -> Iterator[tuple[CheckpointManifest, bytes]]:
        """Committed checkpoints whose object matches its manifest: the one `latest` names,
        then the others newest first (a pointer that is missing, or names a checkpoint that
        does not verify, falls back to the newest one that does)."""
        newest_first = list(reversed(self.committed_ids()))
        pointer = self.latest_id()
        if pointer in newest_first:
            newest_first.remove(pointer)
            newest_first.insert(0, pointer)
        for ckpt_id in newest_first:
            manifest = self.read_manifest(ckpt_id)
            if manifest is None:
                print(f"pivot-trainer: skipping {ckpt_id}: unreadable manifest", file=sys.stderr)
                continue
            data = self._get(manifest.object_key)
            if data is None or len(data) != manifest.size_bytes:
                print(
                    f"pivot-trainer: skipping {ckpt_id}: model object missing or truncated",
                    file=sys.stderr,
                )
                continue
            if hashlib.sha256(data).hexdigest() != manifest.sha256:
                print(f"pivot-trainer: skipping {ckpt_id}: sha256 mismatch", file=sys.stderr)
                continue
            yield manifest, data

    # -- writing -------------------------------------------------------------------------

    def save(
        self,
        ckpt_id: str,
        data: bytes,
        *,
        epoch: int,
        metrics: dict[str, float],
        metric_name: str | None,
        metric_value: float | None,
        is_best: bool,
    ) -> CheckpointManifest:
        object_key = storage.model_key(self.session_id, ckpt_id)
        # The digest is computed while the bytes upload (hashlib releases the GIL on large
        # buffers), so it costs no wall time.
        digest: list[str] = []
        hasher = threading.Thread(target=lambda: digest.append(hashlib.sha256(data).hexdigest()))
        hasher.start()
        if len(data) < SINGLE_PUT_BYTES:
            # One PUT: the transfer manager's thread pool and futures cost more CPU than a
            # small object's upload (and that CPU is taken from the training loop).
            self.client.put_object(Bucket=self.bucket, Key=object_key, Body=data)
        else:
            # upload_fileobj goes through the transfer manager: multipart for large models.
            self.client.upload_fileobj(io.BytesIO(data), self.bucket, object_key)
        hasher.join()
        manifest = CheckpointManifest(
            checkpoint_id=ckpt_id,
            session_id=self.session_id,
            epoch=epoch,
            metrics=metrics,
            metric_name=metric_name,
            metric_value=metric_value,
            is_best=is_best,
            size_bytes=len(data),
            sha256=digest[0],
            object_key=object_key,
            created_at=keys.utcnow_iso(),
        )
        self.client.put_object(
            Bucket=self.bucket,
            Key=storage.manifest_key(self.session_id, ckpt_id),
            Body=manifest.model_dump_json().encode(),
            ContentType="application/json",
        )
        self.client.put_object(
            Bucket=self.bucket,
            Key=storage.latest_key(self.session_id),
            Body=ckpt_id.encode(),
            ContentType="text/plain",
        )
        return manifest

    def delete(self, ckpt_id: str) -> None:
        self.client.delete_object(
            Bucket=self.bucket, Key=storage.manifest_key(self.session_id, ckpt_id)
        )
        self.client.delete_object(
            Bucket=self.bucket, Key=storage.model_key(self.session_id, ckpt_id)
        )


def to_delete(
    committed: list[Committed],
    latest_id: str,
    *,
    keep_last: int | None,
    keep_best: int,
    mode: str,
) -> list[str]:
    """Ids that retention removes: never the latest, the newest `keep_last` end-of-epoch ones,
    or the best `keep_best` by metric; mid-epoch checkpoints go once anything newer exists."""
    full = sorted((c for c in committed if c.step == 0), key=lambda c: c.epoch)
    keep = {latest_id}
    if keep_last is None:
        keep |= {c.ckpt_id for c in full}
    else:
        keep |= {c.ckpt_id for c in full[-keep_last:]} if keep_last else set()
        scored = [c for c in full if c.metric_value is not None]
        # Ties favour the earlier epoch, matching is_best ("strictly better than all before").
        scored.sort(key=lambda c: (-c.metric_value if mode == "max" else c.metric_value, c.epoch))  # type: ignore[operator]
        keep |= {c.ckpt_id for c in scored[:keep_best]}
    return [c.ckpt_id for c in committed if c.ckpt_id not in keep]
