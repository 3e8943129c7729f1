"""The CRD's openAPIV3Schema is enforced on every write, as a real API server does."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

pytestmark = pytest.mark.integration

NS = "default"
GROUP, VERSION, PLURAL = "pivot.dev", "v1alpha1", "trainingsessions"
MERGE = "application/merge-patch+json"


def body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingSession",
        "metadata": {"name": name},
        "spec": spec,
    }


def invalid(e: ApiException) -> dict[str, Any]:
    assert e.status == 422, e.body
    status: dict[str, Any] = json.loads(e.body)
    assert status["kind"] == "Status" and status["reason"] == "Invalid"
    return status


@pytest.fixture
def co(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"config": {"epochs": 0}}, "spec.config.epochs", "FieldValueInvalid"),
        ({"config": {"epochs": "3"}}, "spec.config.epochs", "FieldValueTypeInvalid"),
        ({"config": {}}, "spec.config.epochs", "FieldValueRequired"),
        (
            {"config": {"epochs": 1, "learning_rate": 0}},
            "spec.config.learning_rate",
            "FieldValueInvalid",
        ),
        (
            {"config": {"epochs": 1}, "checkpoint": {"mode": "median"}},
            "spec.checkpoint.mode",
            "FieldValueNotSupported",
        ),
        ({"config": {"epochs": 1}, "resources": {"cpu": True}}, "spec.resources.cpu", None),
        # What the trainer refuses, the CRD states where a schema can (pivot_schema.config).
        (
            {"config": {"epochs": 1, "optimizer": "bogus"}},
            "spec.config.optimizer",
            "FieldValueNotSupported",
        ),
        (
            {"config": {"epochs": 1, "batch_size": 10**13}},
            "spec.config.batch_size",
            "FieldValueInvalid",
        ),
        (
            {"config": {"epochs": 1, "image_size": 47}},
            "spec.config.image_size",
            "FieldValueInvalid",
        ),
        # true, false or "auto": an enum on an untyped node (the CRD says why).
        (
            {"config": {"epochs": 1, "compile": "yes"}},
            "spec.config.compile",
            "FieldValueNotSupported",
        ),
        ({"config": {"epochs": 1, "compile": 1}}, "spec.config.compile", "FieldValueNotSupported"),
        (
            {"config": {"epochs": 1, "data_on_device": {"auto": True}}},
            "spec.config.data_on_device",
            "FieldValueNotSupported",
        ),
        (
            {"config": {"epochs": 1}, "resources": {"memory": "16 gigs"}},
            "spec.resources.memory",
            "FieldValueInvalid",
        ),
        (
            {"config": {"epochs": 1}, "nodeSelector": {"zone": "not a label value"}},
            "spec.nodeSelector.zone",
            "FieldValueInvalid",
        ),
    ],
)
async def test_create_rejects_invalid_spec(
    co: client.CustomObjectsApi, spec: dict[str, Any], field: str, reason: str | None
) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ApiException) as ei:
        await co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body(name, spec))
    status = invalid(ei.value)
    assert f'TrainingSession.pivot.dev "{name}" is invalid' in status["message"]
    causes = status["details"]["causes"]
    assert field in [c["field"] for c in causes], causes
    if reason:
        assert reason in [c["reason"] for c in causes]


async def test_update_and_patch_are_validated(co: client.CustomObjectsApi) -> None:
    name = f"val-{uuid.uuid4().hex[:8]}"
    ts = await co.create_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        body(name, {"config": {"epochs": 2}, "resources": {"cpu": "500m", "memory": 1024}}),
    )
    with pytest.raises(ApiException) as ei:
        await co.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            name,
            {"spec": {"config": {"epochs": 0}}},
            _content_type=MERGE,
        )
    assert "spec.config.epochs" in invalid(ei.value)["message"]
    ts["spec"]["config"]["epochs"] = "many"
    with pytest.raises(ApiException) as ei:
        await co.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, ts)
    invalid(ei.value)
    with pytest.raises(ApiException) as ei:
        await co.patch_namespaced_custom_object_status(
            GROUP, VERSION, NS, PLURAL, name, {"status": {"phase": "Exploded"}}, _content_type=MERGE
        )
    status = invalid(ei.value)
    assert status["details"]["causes"][0]["field"] == "status.phase"
    assert "Unsupported value" in status["message"]
    with pytest.raises(ApiException) as ei:
        await co.patch_namespaced_custom_object_status(
            GROUP, VERSION, NS, PLURAL, name, {"status": {"progress": 1.5}}, _content_type=MERGE
        )
    invalid(ei.value)
    with pytest.raises(ApiException) as ei:
        await co.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            name,
            {"status": {"startedAt": "yesterday"}},
            _content_type=MERGE,
        )
    assert "status.startedAt" in invalid(ei.value)["message"]
    ok = await co.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        name,
        {
            "status": {
                "phase": "Running",
                "progress": 0.5,
                "latestMetrics": {"val_loss": 0.1},
                "startedAt": "2026-01-02T03:04:05Z",
                "message": None,
            }
        },
        _content_type=MERGE,
    )
    assert ok["status"]["progress"] == 0.5 and "message" not in ok["status"]
    current = await co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert current["spec"]["config"]["epochs"] == 2  # rejected writes changed nothing
    await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)


async def test_unknown_fields_are_pruned_unless_preserved(co: client.CustomObjectsApi) -> None:
    name = f"prune-{uuid.uuid4().hex[:8]}"
    ts = await co.create_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        body(name, {"config": {"epochs": 1, "my_knob": {"depth": 3}}, "bogus": 1, "image": None}),
    )
    assert "bogus" not in ts["spec"] and "image" not in ts["spec"]  # nulls are pruned too
    assert ts["spec"]["config"]["my_knob"] == {"depth": 3}  # config preserves unknown keys
    ts = await co.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        name,
        {"status": {"phase": "Pending", "kopf": {"x": 1}}},
        _content_type=MERGE,
    )
    assert ts["status"] == {"phase": "Pending"}
    with pytest.raises(ApiException) as ei:
        await co.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            name,
            {"spec": {"bogus": 2}},
            field_validation="Strict",
            _content_type=MERGE,
        )
    assert ei.value.status == 400 and 'unknown field \\"spec.bogus\\"' in ei.value.body
    await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)


async def test_true_false_or_auto_keys_take_exactly_those(co: client.CustomObjectsApi) -> None:
    for value in (True, False, "auto"):
        name = f"tri-{uuid.uuid4().hex[:8]}"
        config = {"epochs": 1, "compile": value, "data_on_device": value}
        ts = await co.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, body(name, {"config": config})
        )
        assert ts["spec"]["config"] == config
        await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    with pytest.raises(ApiException) as ei:
        await co.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, body("tri-bad", {"config": {"epochs": 1, "compile": "on"}})
        )
    assert 'supported values: "true", "false", "auto"' in invalid(ei.value)["message"]


def widget_crd(group: str, mode: dict[str, Any]) -> dict[str, Any]:
    """A CRD whose spec.mode has the schema `mode`."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"mode": mode}}
                            },
                        }
                    },
                }
            ],
        },
    }


MODE = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[mode]"


@pytest.mark.parametrize(
    ("mode", "field"),
    [
        # No type and no extension that excuses one: not structural.
        ({"enum": [True, False, "auto"]}, f"{MODE}.type"),
        # A type in anyOf is not structural either (only int-or-string's pair is).
        (
            {
                "x-kubernetes-preserve-unknown-fields": True,
                "anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["auto"]}],
            },
            f"{MODE}.anyOf[0].type",
        ),
        # CEL has no type for an untyped node, so its rules cannot compile.
        (
            {
                "x-kubernetes-preserve-unknown-fields": True,
                "x-kubernetes-validations": [
                    {"rule": "type(self) == bool || self == 'auto'", "message": "bool or auto"}
                ],
            },
            f"{MODE}.x-kubernetes-validations",
        ),
    ],
)
async def test_a_crd_the_server_cannot_hold_is_refused(
    api: client.ApiClient, mode: dict[str, Any], field: str
) -> None:
    ext = client.ApiextensionsV1Api(api)
    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    with pytest.raises(ApiException) as ei:
        await ext.create_custom_resource_definition(widget_crd(group, mode))
    assert ei.value.status == 422, ei.value.body
    status = json.loads(ei.value.body)
    assert field in [c["field"] for c in status["details"]["causes"]], status


async def test_an_untyped_enum_with_preserved_fields_is_held_and_enforced(
    api: client.ApiClient,
) -> None:
    """What the CRD does for true, false or "auto" is what a real server establishes."""
    ext = client.ApiextensionsV1Api(api)
    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    mode = {"x-kubernetes-preserve-unknown-fields": True, "enum": [True, False, "auto"]}
    await ext.create_custom_resource_definition(widget_crd(group, mode))
    try:
        co = client.CustomObjectsApi(api)

        async def create(name: str, value: Any) -> dict[str, Any]:
            obj = {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": name}}
            made: dict[str, Any] = await co.create_namespaced_custom_object(
                group, "v1", NS, "gadgets", {**obj, "spec": {"mode": value}}
            )
            return made

        async with asyncio.timeout(10):  # served once established
            while True:
                try:
                    await create("g-true", True)
                    break
                except ApiException as e:
                    if e.status != 404:
                        raise
                    await asyncio.sleep(0.1)
        assert (await create("g-auto", "auto"))["spec"]["mode"] == "auto"
        for bad in ("yes", 1, [True]):
            with pytest.raises(ApiException) as ei:
                await create("g-bad", bad)
            assert invalid(ei.value)["details"]["causes"][0]["field"] == "spec.mode"
    finally:
        await ext.delete_custom_resource_definition(f"gadgets.{group}")
