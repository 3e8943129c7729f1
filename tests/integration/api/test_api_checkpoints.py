"""Checkpoints: listed from the manifests in S3, uploaded in streamed parts, downloaded, deleted."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

from pivot_schema import keys, storage
from pivot_schema.storage import CheckpointManifest

from .api_platform import Platform, platform_settings, serve

pytestmark = pytest.mark.integration

CKPTS = "/api/v1/checkpoints"
MiB = 1024 * 1024


@pytest.fixture
def s3(s3_server: Any) -> Any:
    return s3_server.client()


def commit(
    s3: Any,
    bucket: str,
    sid: str,
    ckpt_id: str,
    *,
    epoch: int,
    metrics: dict[str, float],
    data: bytes = b"weights",
) -> None:
    """Write a checkpoint the way the trainer does: object, manifest, then `latest`."""
    key = storage.model_key(sid, ckpt_id)
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    manifest = CheckpointManifest(
        checkpoint_id=ckpt_id,
        session_id=sid,
        epoch=epoch,
        metrics=metrics,
        metric_name="val_loss",
        metric_value=metrics.get("val_loss"),
        is_best=True,  # the trainer's "best so far"; the API recomputes it
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        object_key=key,
        created_at=keys.utcnow_iso(),
    )
    s3.put_object(
        Bucket=bucket, Key=storage.manifest_key(sid, ckpt_id), Body=manifest.model_dump_json()
    )
    s3.put_object(Bucket=bucket, Key=storage.latest_key(sid), Body=ckpt_id.encode())


async def trained_session(platform: Platform, s3: Any, bucket: str) -> str:
    sid = (await platform.create())["session_id"]
    commit(s3, bucket, sid, storage.checkpoint_id(sid, 1), epoch=1, metrics={"val_loss": 0.9})
    commit(s3, bucket, sid, storage.checkpoint_id(sid, 2), epoch=2, metrics={"val_loss": 0.4})
    commit(s3, bucket, sid, storage.checkpoint_id(sid, 3), epoch=3, metrics={"val_loss": 0.6})
    commit(s3, bucket, sid, storage.partial_checkpoint_id(sid, 3, 139), epoch=3, metrics={})
    return sid


def assert_envelope(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    return dict(body["error"]["details"])


def form(sid: str, epoch: Any = 1, metrics: str | None = '{"val_loss": 0.5}') -> dict[str, Any]:
    data: dict[str, Any] = {"session_id": sid, "epoch": str(epoch)}
    if metrics is not None:
        data["metrics"] = metrics
    return data


async def upload(
    http: httpx.AsyncClient, sid: str, content: bytes, name: str = "model.pth", **fields: Any
) -> httpx.Response:
    return await http.post(
        CKPTS, data=form(sid, **fields), files={"file": (name, content, "application/octet-stream")}
    )


async def test_list_gives_the_reference_fields_with_exactly_one_best_per_session(
    platform: Platform, s3: Any, s3_server: Any
) -> None:
    sid = await trained_session(platform, s3, s3_server.bucket)
    resp = await platform.http.get(CKPTS, params={"session_id": sid})
    assert resp.status_code == 200
    ckpts = resp.json()["checkpoints"]
    assert len(ckpts) == 4
    by_id = {c["checkpoint_id"]: c for c in ckpts}
    best = by_id[storage.checkpoint_id(sid, 2)]
    assert {k: best[k] for k in ("session_id", "epoch", "metric_name", "metric_value")} == {
        "session_id": sid,
        "epoch": 2,
        "metric_name": "val_loss",
        "metric_value": 0.4,
    }
    assert best["file_path"] == (
        f"s3://{s3_server.bucket}/{storage.model_key(sid, storage.checkpoint_id(sid, 2))}"
    )
    assert best["file_size_mb"] == round(len(b"weights") / MiB, 3)
    assert best["created_at"].endswith("Z")
    assert [c["checkpoint_id"] for c in ckpts if c["is_best"]] == [best["checkpoint_id"]]
    partial = by_id[storage.partial_checkpoint_id(sid, 3, 139)]
    assert partial["metric_value"] is None and partial["step"] == 139


async def test_best_follows_the_sessions_metric_and_mode(
    platform: Platform, s3: Any, s3_server: Any
) -> None:
    config = {"epochs": 3, "checkpoint": {"metric": "val_accuracy", "mode": "max"}}
    sid = (await platform.create(config_path=None, config=config))["session_id"]
    for epoch, acc in ((1, 0.5), (2, 0.8), (3, 0.8)):
        commit(
            s3,
            s3_server.bucket,
            sid,
            storage.checkpoint_id(sid, epoch),
            epoch=epoch,
            metrics={"val_accuracy": acc, "val_loss": 1.0 / epoch},
        )
    ckpts = (await platform.http.get(CKPTS, params={"session_id": sid})).json()["checkpoints"]
    best = [c for c in ckpts if c["is_best"]]
    # A tie keeps the earlier checkpoint best, as the trainer's "strictly better" does.
    assert [(c["epoch"], c["metric_name"], c["metric_value"]) for c in best] == [
        (2, "val_accuracy", 0.8)
    ]


async def test_list_is_newest_first_and_honours_limit(
    platform: Platform, s3: Any, s3_server: Any
) -> None:
    sid = await trained_session(platform, s3, s3_server.bucket)
    other = await trained_session(platform, s3, s3_server.bucket)
    everything = (await platform.http.get(CKPTS, params={"limit": 10_000})).json()["checkpoints"]
    assert {sid, other} <= {c["session_id"] for c in everything}
    stamps = [c["created_at"] for c in everything]
    assert stamps == sorted(stamps, reverse=True)
    two = (await platform.http.get(CKPTS, params={"session_id": sid, "limit": 2})).json()
    assert len(two["checkpoints"]) == 2
    assert {c["session_id"] for c in two["checkpoints"]} == {sid}


async def test_list_of_a_session_without_checkpoints_is_empty(platform: Platform) -> None:
    resp = await platform.http.get(CKPTS, params={"session_id": "sess-nothing-here"})
    assert resp.json() == {"checkpoints": []}


async def test_list_rejects_a_bad_limit_with_the_envelope(platform: Platform) -> None:
    details = assert_envelope(
        await platform.http.get(CKPTS, params={"limit": 0}), 422, "VALIDATION_ERROR"
    )
    assert details["field"] == "limit"


async def test_upload_streams_to_s3_and_downloads_the_same_bytes(
    platform: Platform, s3: Any, s3_server: Any
) -> None:
    sid = (await platform.create())["session_id"]
    content = bytes(range(256)) * 4096  # 1 MiB
    resp = await upload(platform.http, sid, content, name="../../etc/My Model (v2).pth")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    ckpt_id = body["checkpoint_id"]
    assert storage.parse_checkpoint_id(ckpt_id) == sid
    assert body["file_size_mb"] == 1.0 and body["uploaded_at"].endswith("Z")

    manifest = json.loads(
        s3.get_object(Bucket=s3_server.bucket, Key=storage.manifest_key(sid, ckpt_id))[
            "Body"
        ].read()
    )
    assert manifest["sha256"] == hashlib.sha256(content).hexdigest()
    assert manifest["metrics"] == {"val_loss": 0.5} and manifest["epoch"] == 1
    assert manifest["file_name"] == "My_Model_v2_.pth"

    listed = (await platform.http.get(CKPTS, params={"session_id": sid})).json()["checkpoints"]
    assert [(c["checkpoint_id"], c["is_best"], c["metric_value"]) for c in listed] == [
        (ckpt_id, True, 0.5)
    ]

    got = await platform.http.get(f"{CKPTS}/{ckpt_id}/download")
    assert got.status_code == 200
    assert got.content == content
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith('attachment; filename="My_Model_v2_.pth"')


async def test_upload_larger_than_a_part_is_sent_in_several_parts(
    platform: Platform, s3: Any, s3_server: Any
) -> None:
    sid = (await platform.create())["session_id"]
    content = b"\x01\x02\x03\x04" * (11 * MiB // 4)  # 11 MiB: two full 5 MiB parts and a tail
    settings = platform.app.state.settings.model_copy(update={"checkpoint_part_bytes": 5 * MiB})
    async with serve(settings) as (_, http):
        resp = await upload(http, sid, content)
    assert resp.status_code == 201, resp.text
    ckpt_id = resp.json()["checkpoint_id"]
    head = s3.head_object(Bucket=s3_server.bucket, Key=storage.model_key(sid, ckpt_id))
    assert head["ContentLength"] == len(content)
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object of three parts


async def test_upload_with_the_file_before_the_fields_still_works(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    boundary = "pivotboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.pth"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + b"\x00weights\xff"
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="session_id"\r\n\r\n{sid}'
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="epoch"\r\n\r\n7'
            f"\r\n--{boundary}--\r\n"
        ).encode()
    )
    resp = await platform.http.post(
        CKPTS, content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert resp.status_code == 201, resp.text
    ckpt_id = resp.json()["checkpoint_id"]
    got = await platform.http.get(f"{CKPTS}/{ckpt_id}/download")
    assert got.content == b"\x00weights\xff"


async def test_upload_larger_than_the_limit_is_refused_with_413(
    platform: Platform, s3: Any, s3_server: Any
) -> None:
    sid = (await platform.create())["session_id"]
    settings = platform.app.state.settings.model_copy(update={"checkpoint_max_upload_bytes": 1000})
    async with serve(settings) as (_, http):
        resp = await upload(http, sid, b"x" * 1001)
    details = assert_envelope(resp, 413, "PAYLOAD_TOO_LARGE")
    assert details["max_bytes"] == 1000
    left = s3.list_objects_v2(Bucket=s3_server.bucket, Prefix=storage.session_prefix(sid))
    assert left.get("KeyCount", 0) == 0
    uploads = s3.list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads", [])
    assert not [u for u in uploads if u["Key"].startswith(storage.session_prefix(sid))]


@pytest.mark.parametrize(
    ("fields", "name", "field"),
    [
        ({"metrics": "{not json"}, "m.pth", "metrics"),
        ({"metrics": "[1, 2]"}, "m.pth", "metrics"),
        ({"metrics": '{"val_loss": "low"}'}, "m.pth", "metrics.val_loss"),
        ({"epoch": "-1"}, "m.pth", "epoch"),
        ({"epoch": "two"}, "m.pth", "epoch"),
    ],
)
async def test_upload_with_invalid_fields_is_refused_with_422(
    platform: Platform, fields: dict[str, str], name: str, field: str
) -> None:
    sid = (await platform.create())["session_id"]
    resp = await upload(platform.http, sid, b"w", name=name, **fields)
    assert assert_envelope(resp, 422, "VALIDATION_ERROR")["field"] == field


async def test_upload_without_a_file_or_session_is_refused_with_422(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    no_file = await platform.http.post(CKPTS, data=form(sid), files={"other": ("x", b"")})
    assert assert_envelope(no_file, 422, "VALIDATION_ERROR")["field"] == "file"
    no_session = await platform.http.post(
        CKPTS, data={"epoch": "1"}, files={"file": ("m.pth", b"w")}
    )
    assert assert_envelope(no_session, 422, "VALIDATION_ERROR")["field"] == "session_id"
    not_multipart = await platform.http.post(CKPTS, json={"session_id": sid})
    assert_envelope(not_multipart, 422, "VALIDATION_ERROR")
    empty = await upload(platform.http, sid, b"")
    assert assert_envelope(empty, 422, "VALIDATION_ERROR")["field"] == "file"


async def test_an_upload_name_without_a_pytorch_extension_gets_pth(
    platform: Platform,
) -> None:
    sid = (await platform.create())["session_id"]
    resp = await upload(platform.http, sid, b"w", name="C:\\runs\\.hidden model.txt")
    assert resp.status_code == 201, resp.text
    got = await platform.http.get(f"{CKPTS}/{resp.json()['checkpoint_id']}/download")
    assert got.headers["content-disposition"].startswith(
        'attachment; filename="hidden_model.txt.pth"'
    )


async def test_upload_for_an_unknown_session_is_404(platform: Platform) -> None:
    resp = await upload(platform.http, "sess-doesnotexist", b"w")
    assert_envelope(resp, 404, "NOT_FOUND")


@pytest.mark.parametrize("ckpt_id", ["ckpt_sess-nope_e00001", "not-a-checkpoint"])
async def test_unknown_checkpoints_are_404_for_download_and_delete(
    platform: Platform, ckpt_id: str
) -> None:
    assert_envelope(await platform.http.get(f"{CKPTS}/{ckpt_id}/download"), 404, "NOT_FOUND")
    assert_envelope(await platform.http.delete(f"{CKPTS}/{ckpt_id}"), 404, "NOT_FOUND")


async def test_delete_removes_manifest_and_object_and_moves_latest_back(
    platform: Platform, s3: Any, s3_server: Any
) -> None:
    bucket = s3_server.bucket
    sid = await trained_session(platform, s3, bucket)
    newest = storage.partial_checkpoint_id(sid, 3, 139)
    resp = await platform.http.delete(f"{CKPTS}/{newest}")
    assert resp.status_code == 200
    assert resp.json() == {"message": "Checkpoint deleted successfully"}
    keys_left = {
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=storage.session_prefix(sid))["Contents"]
    }
    assert storage.manifest_key(sid, newest) not in keys_left
    assert storage.model_key(sid, newest) not in keys_left
    latest = s3.get_object(Bucket=bucket, Key=storage.latest_key(sid))["Body"].read().decode()
    assert latest == storage.checkpoint_id(sid, 3)
    listed = (await platform.http.get(CKPTS, params={"session_id": sid})).json()["checkpoints"]
    assert newest not in {c["checkpoint_id"] for c in listed}
    assert_envelope(await platform.http.delete(f"{CKPTS}/{newest}"), 404, "NOT_FOUND")


async def test_deleting_the_best_checkpoint_makes_the_next_best_best(
    platform: Platform, s3: Any, s3_server: Any
) -> None:
    sid = await trained_session(platform, s3, s3_server.bucket)
    await platform.http.delete(f"{CKPTS}/{storage.checkpoint_id(sid, 2)}")
    listed = (await platform.http.get(CKPTS, params={"session_id": sid})).json()["checkpoints"]
    assert [c["epoch"] for c in listed if c["is_best"]] == [3]


async def test_download_redirects_to_a_presigned_url_when_configured(
    platform: Platform, s3: Any, s3_server: Any
) -> None:
    sid = await trained_session(platform, s3, s3_server.bucket)
    ckpt_id = storage.checkpoint_id(sid, 2)
    settings = platform.app.state.settings.model_copy(update={"checkpoint_download_redirect": True})
    async with serve(settings) as (_, http):
        resp = await http.get(f"{CKPTS}/{ckpt_id}/download")
    assert resp.status_code == 307
    location = resp.headers["location"]
    assert location.startswith(s3_server.endpoint)
    async with httpx.AsyncClient() as direct:
        assert (await direct.get(location)).content == b"weights"


async def test_s3_is_the_truth_a_fresh_app_lists_the_same_checkpoints(
    platform: Platform, s3: Any, s3_server: Any
) -> None:
    sid = await trained_session(platform, s3, s3_server.bucket)
    before = (await platform.http.get(CKPTS, params={"session_id": sid})).json()
    settings = platform_settings(
        kubeconfig=platform.app.state.settings.kubeconfig,
        namespace=platform.namespace,
        configs_dir=platform.configs_dir,
        redis_url=platform.app.state.settings.redis_url,
        s3=s3_server,
    )
    async with serve(settings) as (_, http):
        after = (await http.get(CKPTS, params={"session_id": sid})).json()
    assert after == before
