"""What the API refuses at the door: configs the trainer would refuse, bodies too large or not
JSON, names with control characters, alert rules that could never fire; and what a create may
ask for besides its config (resources, node selector, tolerations, replicas)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from pivot_schema.config import MAX_CONFIG_BYTES, METRICS

from .api_platform import Platform, PlatformFactory, serve_http

pytestmark = pytest.mark.integration

SESSIONS = "/api/v1/training/sessions"
RULES = "/api/v1/alerts/rules"
MiB = 1024 * 1024


def refused(resp: httpx.Response, status: int = 422) -> dict[str, Any]:
    """The reference's envelope with `status`; its error object."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    code = {413: "PAYLOAD_TOO_LARGE", 422: "VALIDATION_ERROR"}[status]
    assert body["error"]["code"] == code
    return dict(body["error"])


# -- the config: the trainer's own validation ------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field", "needle"),
    [
        ({"epochs": 2, "optimizer": "bogus"}, "config.optimizer", "must be one of adam, adamw"),
        ({"epochs": 2, "batch_size": 10**13}, "config.batch_size", "between 1 and 65536"),
        ({"epochs": 2, "image_size": 47}, "config.image_size", "multiple of 4"),
        ({"epochs": True}, "config.epochs", "must be an integer, got True"),
        ({"epochs": 2.5}, "config.epochs", "must be an integer"),
        ({"epochs": 2, "compile": 1}, "config.compile", "must be true or false"),
        ({"epochs": 2, "loss": "mse"}, "config.loss", "must be one of focal, dice, bce"),
        ({"epochs": 2, "learning_rate": 11}, "config.learning_rate", "between"),
        ({"epochs": 2, "checkpoint": {"metric": "f1"}}, "config.checkpoint.metric", "val_loss"),
        ({"epochs": 2, "dataset": {"source": "s3"}}, "config.dataset.prefix", "required"),
    ],
)
async def test_a_config_the_trainer_would_refuse_is_422_naming_the_field(
    platform: Platform, config: dict[str, Any], field: str, needle: str
) -> None:
    resp = await platform.http.post(SESSIONS, json={"config": config})
    error = refused(resp)
    assert error["details"]["field"] == field, error
    assert needle in error["message"], error
    assert await platform.crs() == []


async def test_a_config_no_cr_can_hold_is_refused(platform: Platform) -> None:
    # Python's JSON reads NaN; a CR (JSON as Kubernetes reads it) cannot hold it.
    resp = await platform.http.post(
        SESSIONS,
        content=b'{"config": {"epochs": 2, "notes": {"x": NaN}}}',
        headers={"content-type": "application/json"},
    )
    error = refused(resp)
    assert error["details"]["field"] == "config.notes.x"
    assert "finite" in error["message"]
    assert await platform.crs() == []


async def test_a_config_file_is_checked_the_same_way(platform: Platform) -> None:
    (platform.configs_dir / "sgdx.yaml").write_text("epochs: 3\noptimizer: sgdx\n")
    resp = await platform.http.post(SESSIONS, json={"config_path": "configs/sgdx.yaml"})
    error = refused(resp)
    assert error["details"]["field"] == "config.optimizer"
    assert error["details"]["config_path"] == "configs/sgdx.yaml"
    assert await platform.crs() == []


async def test_the_stored_config_is_the_trainers_canonical_form(platform: Platform) -> None:
    config = {"epochs": 4.0, "optimizer": "AdamW", "scheduler": "Cosine", "model": {"w": 2}}
    resp = await platform.http.post(SESSIONS, json={"config": config})
    assert resp.status_code == 201, resp.text
    stored = {"epochs": 4, "optimizer": "adamw", "scheduler": "cosine", "model": {"w": 2}}
    assert resp.json()["config"] == stored
    assert (await platform.cr(resp.json()["session_id"]))["spec"]["config"] == stored


async def test_a_config_too_large_for_a_cr_is_refused(platform: Platform) -> None:
    # Under the body limit, over what a session's config may hold (etcd, the trainer's env).
    config = {"epochs": 1, "blob": "x" * (MAX_CONFIG_BYTES + 1)}
    error = refused(await platform.http.post(SESSIONS, json={"config": config}))
    assert error["details"]["field"] == "config"
    assert error["details"]["max_bytes"] == MAX_CONFIG_BYTES
    assert await platform.crs() == []


# -- the body -----------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_in_the_envelope(platform: Platform) -> None:
    big = {"config": {"epochs": 1, "blob": "x" * (2 * MiB)}}
    error = refused(await platform.http.post(SESSIONS, json=big), 413)
    assert error["details"]["max_bytes"] == MiB
    assert await platform.crs() == []


async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(platform: Platform) -> None:
    sent = 0

    async def chunks() -> Any:
        nonlocal sent
        yield b'{"config": {"epochs": 1, "blob": "'
        for _ in range(64):  # 4 MiB, never all read
            sent += 64 * 1024
            yield b"x" * (64 * 1024)
        yield b'"}}'

    resp = await platform.http.post(
        SESSIONS, content=chunks(), headers={"content-type": "application/json"}
    )
    refused(resp, 413)
    assert sent < 2 * MiB  # refused as it was read, not after
    assert await platform.crs() == []


async def test_the_limit_is_a_setting(platform_factory: PlatformFactory) -> None:
    async with platform_factory(max_body_bytes=2048) as small:
        body = {"config": {"epochs": 1}, "session_name": "n" * 200}
        assert (await small.http.post(SESSIONS, json=body)).status_code == 201
        body["tags"] = ["t" * 60] * 40
        assert refused(await small.http.post(SESSIONS, json=body), 413)["details"] == {
            "max_bytes": 2048
        }


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    platform_factory: PlatformFactory,
) -> None:
    """Over a real connection: only the headers go out, and the 413 comes back."""
    async with platform_factory() as p:
        settings = p.app.state.settings
    async with serve_http(settings) as (_app, base):
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                f"POST {SESSIONS} HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                f"Content-Length: {50 * MiB}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 413"), head
        writer.close()


async def test_checkpoint_uploads_keep_their_own_larger_limit(
    platform_factory: PlatformFactory,
) -> None:
    async with platform_factory(max_body_bytes=4096) as p:
        big_json = {"config": {"epochs": 1, "blob": "x" * 8192}}
        refused(await p.http.post(SESSIONS, json=big_json), 413)
        sid = (await p.create())["session_id"]
        resp = await p.http.post(
            "/api/v1/checkpoints",
            data={"session_id": sid, "epoch": "1"},
            files={"file": ("model.pth", b"w" * (2 * MiB), "application/octet-stream")},
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["file_size_mb"] == 2.0


async def test_a_body_that_is_not_json_names_the_body_and_the_place(platform: Platform) -> None:
    resp = await platform.http.post(
        SESSIONS,
        content=b'{"config": {"epochs": 2,}}',
        headers={"content-type": "application/json"},
    )
    error = refused(resp)
    assert error["details"]["field"] == "body"
    assert error["details"]["position"] == 24
    assert error["message"].startswith("request body is not valid JSON: ")
    assert "(at character 24)" in error["message"]


# -- names ------------------------------------------------------------------------------------

CONTROL = ["\x00", "\x07", "\n", "\u202e", "\u200b", "\x7f"]


@pytest.mark.parametrize("char", CONTROL, ids=[f"U+{ord(c):04X}" for c in CONTROL])
async def test_control_and_format_characters_are_refused_in_names(
    platform: Platform, char: str
) -> None:
    name = refused(
        await platform.http.post(
            SESSIONS, json={"config": {"epochs": 1}, "session_name": f"a{char}b"}
        )
    )
    assert name["details"]["field"] == "session_name"
    assert f"U+{ord(char):04X}" in name["message"]
    tag = refused(
        await platform.http.post(SESSIONS, json={"config": {"epochs": 1}, "tags": ["ok", char]})
    )
    assert tag["details"]["field"] == "tags.1"
    rule = {"name": f"r{char}", "metric": "val_loss", "condition": "is_nan"}
    assert refused(await platform.http.post(RULES, json=rule))["details"]["field"] == "name"
    assert await platform.crs() == []


async def test_the_issues_session_name_is_refused_and_readable_names_pass(
    platform: Platform,
) -> None:
    bad = "exp\x00\x07\n\u202eloss"
    error = refused(
        await platform.http.post(SESSIONS, json={"config": {"epochs": 1}, "session_name": bad})
    )
    assert "U+0000, U+0007, U+000A, U+202E" in error["message"]
    good = "Lésion-Ω 実験 #1 🧪"
    created = await platform.create(session_name=good, tags=["ü-ber", "東京"])
    assert (await platform.cr(created["session_id"]))["spec"]["sessionName"] == good


# -- alert rules ------------------------------------------------------------------------------


async def test_an_alert_rule_on_a_metric_nothing_writes_is_refused_with_the_known_ones(
    platform: Platform,
) -> None:
    rule = {"name": "typo", "metric": "val_los", "condition": "greater_than", "threshold": 1}
    error = refused(await platform.http.post(RULES, json=rule))
    assert error["details"]["field"] == "metric"
    for known in ("val_loss", "cpu_percent", "gpu_temperature", *METRICS):
        assert known in error["message"]
    assert (await platform.http.get(RULES)).json()["rules"] == []
    # Known ones pass, and a change to an unknown one is refused too.
    created = await platform.http.post(RULES, json={**rule, "metric": "val_loss"})
    assert created.status_code == 201, created.text
    rule_id = created.json()["rule_id"]
    patched = await platform.http.patch(f"{RULES}/{rule_id}", json={"metric": "val_los"})
    assert refused(patched)["details"]["field"] == "metric"


# -- where a session runs ---------------------------------------------------------------------


async def test_create_asks_for_resources_node_selector_tolerations_and_replicas(
    platform: Platform,
) -> None:
    created = await platform.create(
        resources={"gpu": 1, "cpu": "4", "memory": "16Gi"},
        node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        tolerations=[
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "toleration_seconds": 30,
            },
        ],
        replicas=2,
    )
    spec = (await platform.cr(created["session_id"]))["spec"]
    assert spec["resources"] == {"gpu": 1, "cpu": "4", "memory": "16Gi"}
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        },
    ]
    assert spec["replicas"] == 2
    assert spec["suspend"] is True


@pytest.mark.parametrize(
    ("extra", "field", "needle"),
    [
        ({"resources": {"cpu": "lots"}}, "resources.cpu", "Kubernetes quantity"),
        ({"resources": {"memory": "-1Gi"}}, "resources.memory", "Kubernetes quantity"),
        ({"resources": {"memory": 1.5}}, "resources.memory", "Kubernetes quantity"),
        ({"resources": {"gpu": -1}}, "resources.gpu", "greater than or equal to 0"),
        ({"resources": {"gpu": True}}, "resources.gpu", "must be an integer, got True"),
        ({"resources": {"gpus": 1}}, "resources.gpus", "Extra inputs"),
        ({"replicas": 0}, "replicas", "greater than or equal to 1"),
        ({"replicas": 2.5}, "replicas", "valid integer"),
        ({"replicas": True}, "replicas", "must be an integer, got True"),
        ({"node_selector": {"zone": "not a label value"}}, "node_selector.zone", "pattern"),
        ({"node_selector": {"bad key!": "x"}}, "node_selector.bad key!.[key]", "pattern"),
        (
            {"tolerations": [{"key": "k", "operator": "Bogus"}]},
            "tolerations.0.operator",
            "'Exists' or 'Equal'",
        ),
        (
            {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
            "tolerations.0",
            "Exists takes no value",
        ),
    ],
)
async def test_placement_is_validated_as_the_crd_validates_it(
    platform: Platform, extra: dict[str, Any], field: str, needle: str
) -> None:
    resp = await platform.http.post(SESSIONS, json={"config": {"epochs": 1}, **extra})
    error = refused(resp)
    assert error["details"]["field"] == field, resp.text
    assert needle in error["message"], resp.text
    assert await platform.crs() == []
