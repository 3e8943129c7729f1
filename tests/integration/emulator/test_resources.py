"""CRDs at runtime, cluster-scoped custom resources, events, namespaces, leases and nodes."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

pytestmark = pytest.mark.integration

NS = "default"
MERGE = "application/merge-patch+json"


def crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wd"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1, "nullable": True},
                                        "color": {"type": "string", "default": "blue"},
                                        "quota": {"x-kubernetes-int-or-string": True},
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


async def test_crd_created_at_runtime_is_served(api: client.ApiClient) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    ext = client.ApiextensionsV1Api(api)
    await ext.create_custom_resource_definition(crd(group))

    async def established() -> bool:
        c = await ext.read_custom_resource_definition(f"widgets.{group}")
        conds = {x.type: x.status for x in (c.status.conditions or [])}
        return conds.get("Established") == "True"

    async with asyncio.timeout(10):
        while not await established():
            await asyncio.sleep(0.1)
    disc = await client.CustomObjectsApi(api).api_client.call_api(
        f"/apis/{group}/v1", "GET", response_types_map={200: "object"}, _return_http_data_only=True
    )
    names = {r["name"]: r for r in disc["resources"]}
    assert names["widgets"]["namespaced"] is False and names["widgets"]["kind"] == "Widget"
    assert "widgets/status" in names and names["widgets"]["shortNames"] == ["wd"]

    co = client.CustomObjectsApi(api)
    w = await co.create_cluster_custom_object(
        group,
        "v1",
        "widgets",
        {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": None, "quota": "2Gi"},
        },
    )
    assert "namespace" not in w["metadata"]
    assert w["spec"]["color"] == "blue"  # schema defaults are applied
    w = await co.patch_cluster_custom_object(
        group, "v1", "widgets", "w1", {"spec": {"quota": 3}}, _content_type=MERGE
    )
    assert w["spec"]["quota"] == 3 and w["metadata"]["generation"] == 2
    w = await co.patch_cluster_custom_object_status(
        group, "v1", "widgets", "w1", {"status": {"anything": {"goes": 1}}}, _content_type=MERGE
    )
    assert w["status"] == {"anything": {"goes": 1}}
    with pytest.raises(ApiException) as ei:
        await co.patch_cluster_custom_object(
            group, "v1", "widgets", "w1", {"spec": {"size": 0}}, _content_type=MERGE
        )
    assert ei.value.status == 422
    with pytest.raises(ApiException) as ei:  # strategic merge is not defined for CRs
        await co.patch_cluster_custom_object(
            group,
            "v1",
            "widgets",
            "w1",
            {"spec": {"size": 2}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert ei.value.status == 415

    await ext.delete_custom_resource_definition(f"widgets.{group}")

    async def unserved() -> bool:
        try:
            await co.get_cluster_custom_object(group, "v1", "widgets", "w1")
        except ApiException as e:
            return e.status == 404
        return False

    async with asyncio.timeout(10):
        while not await unserved():
            await asyncio.sleep(0.1)


async def test_events_and_involved_object_selectors(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    target = f"ev-{uuid.uuid4().hex[:8]}"
    for reason in ("Started", "Finished"):
        await core.create_namespaced_event(
            NS,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(generate_name=f"{target}."),
                involved_object=client.V1ObjectReference(
                    kind="TrainingSession", name=target, namespace=NS
                ),
                reason=reason,
                message="m",
                type="Normal",
            ),
        )
    other = await core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={target},involvedObject.kind=TrainingSession"
    )
    assert sorted(e.reason for e in other.items) == ["Finished", "Started"]
    ev = client.EventsV1Api(api)
    await ev.create_namespaced_event(
        NS,
        client.EventsV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{target}."),
            regarding=client.V1ObjectReference(kind="Pod", name=target, namespace=NS),
            reason="Pulled",
            action="Pull",
            event_time=dt.datetime.now(dt.UTC),
            reporting_controller="pivot.dev/test",
            reporting_instance="x",
            type="Normal",
        ),
    )
    listed = await ev.list_namespaced_event(NS, field_selector=f"regarding.name={target}")
    assert [e.reason for e in listed.items] == ["Pulled"]


async def test_namespace_lifecycle(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    ns = f"ns-{uuid.uuid4().hex[:8]}"
    created = await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    assert created.status.phase == "Active"
    await core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"))
    )
    with pytest.raises(ApiException) as ei:
        await core.create_namespaced_config_map(
            "no-such-ns", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"))
        )
    assert ei.value.status == 404
    await core.delete_namespace(ns)

    async def cleaned() -> bool:
        try:
            await core.read_namespace(ns)
        except ApiException as e:
            return e.status == 404
        return False

    async with asyncio.timeout(60):
        while not await cleaned():
            await asyncio.sleep(0.2)
    with pytest.raises(ApiException) as ei:
        await core.read_namespaced_config_map("c", ns)
    assert ei.value.status == 404


async def test_leases_and_nodes(api: client.ApiClient) -> None:
    coord = client.CoordinationV1Api(api)
    name = f"lease-{uuid.uuid4().hex[:8]}"
    lease = await coord.create_namespaced_lease(
        NS,
        client.V1Lease(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
        ),
    )
    lease.spec.holder_identity = "b"
    lease = await coord.replace_namespaced_lease(name, NS, lease)
    assert lease.spec.holder_identity == "b"
    await coord.delete_namespaced_lease(name, NS)

    core = client.CoreV1Api(api)
    node = f"node-{uuid.uuid4().hex[:8]}"
    try:
        await core.create_node(
            client.V1Node(metadata=client.V1ObjectMeta(name=node, labels={"pivot.dev/test": "1"}))
        )
    except ApiException as e:
        if e.status == 403:
            pytest.skip("not allowed to create nodes on this cluster")
        raise
    patched = await core.patch_node_status(
        node, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )
    assert patched.status.conditions[0].type == "Ready"
    listed = await core.list_node(label_selector="pivot.dev/test=1")
    assert node in [n.metadata.name for n in listed.items]
    await core.delete_node(node)


async def test_watch_selector_transitions(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = f"wsel-{uuid.uuid4().hex[:8]}"
    cm = await core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels={"stage": "a"}))
    )
    rv = cm.metadata.resource_version
    await core.patch_namespaced_config_map(name, NS, {"metadata": {"labels": {"stage": "b"}}})
    await core.patch_namespaced_config_map(name, NS, {"metadata": {"labels": {"stage": "a"}}})
    await core.delete_namespaced_config_map(name, NS)
    seen = []
    w = watch.Watch()
    async with w.stream(
        core.list_namespaced_config_map,
        NS,
        label_selector="stage=a",
        field_selector=f"metadata.name={name}",
        resource_version=rv,
        timeout_seconds=1,
    ) as stream:
        async for ev in stream:
            seen.append((ev["type"], ev["object"].metadata.labels["stage"]))
            if len(seen) == 3:
                break
    # Leaving the selector reads as DELETED, coming back as ADDED.
    assert seen == [("DELETED", "b"), ("ADDED", "a"), ("DELETED", "a")]
