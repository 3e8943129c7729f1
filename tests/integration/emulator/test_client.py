"""CRUD, concurrency, selectors, watch and deletion semantics through kubernetes_asyncio."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

NS = "default"
GROUP, VERSION, PLURAL = "pivot.dev", "v1alpha1", "trainingsessions"
# CustomObjectsApi sends a dict body as a JSON patch unless told otherwise; a real server
# answers 400 to that, and so does the emulator.
MERGE = "application/merge-patch+json"


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ts_body(name: str, epochs: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingSession",
        "metadata": {"name": name},
        "spec": {"config": {"epochs": epochs}},
        **extra,
    }


# Garbage collection and finalization are asynchronous on a real cluster: tests wait for them.
async def gone(read: Callable[[], Awaitable[Any]]) -> bool:
    try:
        await read()
    except ApiException as e:
        return e.status == 404
    return False


def pod_body(name: str, labels: dict[str, str] | None = None, **spec: Any) -> client.V1Pod:
    # No scheduler owns this name, so on a real cluster the pod stays unbound (and no kubelet
    # runs it) until the test binds it itself.
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="busybox")],
            scheduler_name="pivot-test-no-scheduler",
            **spec,
        ),
    )


async def test_secret_and_pod_crud(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = uniq("sec")
    created = await core.create_namespaced_secret(
        NS, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"k": "v"})
    )
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    assert base64.b64decode(created.data["k"]) == b"v"
    created.data["k2"] = base64.b64encode(b"w").decode()
    replaced = await core.replace_namespaced_secret(name, NS, created)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    patched = await core.patch_namespaced_secret(name, NS, {"metadata": {"labels": {"a": "b"}}})
    assert patched.metadata.labels == {"a": "b"} and set(patched.data) == {"k", "k2"}
    names = [s.metadata.name for s in (await core.list_namespaced_secret(NS)).items]
    assert name in names
    await core.delete_namespaced_secret(name, NS)
    assert await gone(lambda: core.read_namespaced_secret(name, NS))

    pod = await core.create_namespaced_pod(NS, pod_body(uniq("pod")))
    assert pod.status.phase == "Pending"
    read = await core.read_namespaced_pod(pod.metadata.name, NS)
    assert read.metadata.uid == pod.metadata.uid
    deleted = await core.delete_namespaced_pod(pod.metadata.name, NS)
    assert deleted.metadata.name == pod.metadata.name  # pods come back from DELETE
    await eventually(lambda: gone(lambda: core.read_namespaced_pod(pod.metadata.name, NS)))


async def test_bad_writes_are_rejected(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as ei:  # data holds base64; raw text goes in stringData
        await core.create_namespaced_secret(
            NS,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=uniq("sec")), data={"k": "not base64!"}
            ),
        )
    assert ei.value.status == 400
    co = client.CustomObjectsApi(api)
    name = uniq("ts")
    await co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, ts_body(name))
    with pytest.raises(ApiException) as ei:
        await co.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            name,
            [
                {"op": "test", "path": "/spec/config/epochs", "value": 99},
                {"op": "replace", "path": "/spec/config/epochs", "value": 4},
            ],
        )
    assert ei.value.status == 422
    with pytest.raises(ApiException) as ei:  # a dict sent as a JSON patch
        await co.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, name, {"spec": {"suspend": True}}
        )
    assert ei.value.status == 400
    await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)


@pytest.mark.parametrize(
    ("kind", "meta"),
    [
        ("configmap", {"name": "ok-name", "labels": {"run": "has space"}}),
        ("configmap", {"name": "ok-name", "labels": {"run": "x" * 64}}),
        ("configmap", {"name": "ok-name", "labels": {"bad key!": "v"}}),
        ("configmap", {"name": "Upper_Case"}),
        ("service", {"name": "0starts-with-a-digit"}),
        ("service", {"name": "s" * 64}),
    ],
)
async def test_metadata_is_validated(
    api: client.ApiClient, kind: str, meta: dict[str, Any]
) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as ei:
        if kind == "service":
            await core.create_namespaced_service(
                NS,
                client.V1Service(
                    metadata=client.V1ObjectMeta(**meta),
                    spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
                ),
            )
        else:
            await core.create_namespaced_config_map(
                NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(**meta))
            )
    assert ei.value.status == 422 and '"reason":"Invalid"' in ei.value.body.replace(" ", "")


async def test_list_pagination(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    run = uuid.uuid4().hex[:8]
    for i in range(5):
        await core.create_namespaced_config_map(
            NS,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=f"page-{run}-{i}", labels={"page": run})
            ),
        )
    names: list[str] = []
    token = None
    pages = 0
    while True:
        res = await core.list_namespaced_config_map(
            NS, label_selector=f"page={run}", limit=2, _continue=token
        )
        names += [c.metadata.name for c in res.items]
        pages += 1
        token = res.metadata._continue
        if not token:
            break
    assert sorted(names) == [f"page-{run}-{i}" for i in range(5)] and pages == 3
    await core.delete_collection_namespaced_config_map(NS, label_selector=f"page={run}")


async def test_not_found_is_a_status(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as ei:
        await core.read_namespaced_config_map("does-not-exist", NS)
    assert ei.value.status == 404
    assert '"reason":"NotFound"' in ei.value.body.replace(" ", "")


async def test_generate_name_and_duplicates(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(generate_name="gen-"), data={"a": "1"})
    a = await core.create_namespaced_config_map(NS, cm)
    b = await core.create_namespaced_config_map(NS, cm)
    assert a.metadata.name.startswith("gen-") and len(a.metadata.name) > len("gen-")
    assert a.metadata.name != b.metadata.name
    dup = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=a.metadata.name))
    with pytest.raises(ApiException) as ei:
        await core.create_namespaced_config_map(NS, dup)
    assert ei.value.status == 409 and "AlreadyExists" in ei.value.body


async def test_stale_resource_version_conflicts(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    cm = await core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=uniq("cm")), data={"n": "0"})
    )
    stale_rv = cm.metadata.resource_version
    cm.data["n"] = "1"
    await core.replace_namespaced_config_map(cm.metadata.name, NS, cm)
    cm.data["n"] = "2"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as ei:
        await core.replace_namespaced_config_map(cm.metadata.name, NS, cm)
    assert ei.value.status == 409 and "Conflict" in ei.value.body
    with pytest.raises(ApiException) as ei:
        await core.patch_namespaced_config_map(
            cm.metadata.name, NS, {"metadata": {"resourceVersion": stale_rv}, "data": {"n": "3"}}
        )
    assert ei.value.status == 409
    co = client.CustomObjectsApi(api)
    ts = await co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, ts_body(uniq("ts")))
    name = ts["metadata"]["name"]
    await co.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, name, {"spec": {"suspend": True}}, _content_type=MERGE
    )
    with pytest.raises(ApiException) as ei:
        await co.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, ts)
    assert ei.value.status == 409
    await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)


async def test_trainingsession_status_isolation_and_generation(api: client.ApiClient) -> None:
    co = client.CustomObjectsApi(api)
    name = uniq("ts")
    ts = await co.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, ts_body(name, status={"phase": "Running"})
    )
    assert "status" not in ts  # status is not settable on create with a status subresource
    assert ts["metadata"]["generation"] == 1

    # The main resource ignores status; a spec change bumps the generation.
    ts = await co.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        name,
        {"spec": {"config": {"epochs": 7}}, "status": {"phase": "Failed"}},
        _content_type=MERGE,
    )
    assert ts["spec"]["config"]["epochs"] == 7 and "status" not in ts
    assert ts["metadata"]["generation"] == 2

    # /status ignores everything but status, and does not bump the generation.
    ts = await co.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        name,
        {"spec": {"config": {"epochs": 99}}, "status": {"phase": "Running", "currentEpoch": 1}},
        _content_type=MERGE,
    )
    assert ts["status"] == {"phase": "Running", "currentEpoch": 1}
    assert ts["spec"]["config"]["epochs"] == 7 and ts["metadata"]["generation"] == 2

    # Annotations alone do not bump the generation either.
    ts = await co.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        name,
        {"metadata": {"annotations": {"x": "y"}}},
        _content_type=MERGE,
    )
    assert ts["metadata"]["generation"] == 2 and ts["status"]["phase"] == "Running"

    # A PUT of the main resource keeps the stored status.
    ts["status"] = {"phase": "Completed"}
    ts["spec"]["suspend"] = True
    ts = await co.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, ts)
    assert ts["status"]["phase"] == "Running" and ts["spec"]["suspend"] is True

    listed = await co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    assert name in [i["metadata"]["name"] for i in listed["items"]]
    cluster = await co.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert name in [i["metadata"]["name"] for i in cluster["items"]]
    await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert await gone(lambda: co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name))


async def test_json_patch(api: client.ApiClient) -> None:
    co = client.CustomObjectsApi(api)
    name = uniq("ts")
    await co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, ts_body(name))
    ts = await co.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        name,
        [
            {"op": "replace", "path": "/spec/config/epochs", "value": 4},
            {"op": "add", "path": "/spec/tags", "value": ["a"]},
            {"op": "add", "path": "/spec/tags/-", "value": "b"},
        ],
    )
    assert ts["spec"]["config"]["epochs"] == 4 and ts["spec"]["tags"] == ["a", "b"]
    await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)


async def test_label_and_field_selectors(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    run = uuid.uuid4().hex[:8]
    specs = {
        "a": {"tier": "web", "env": "prod"},
        "b": {"tier": "db", "env": "prod"},
        "c": {"tier": "web"},
    }
    for suffix, labels in specs.items():
        await core.create_namespaced_pod(
            NS, pod_body(f"sel-{run}-{suffix}", {"run": run, **labels})
        )
    # Pod a is bound and running: the node and phase are field-selectable.
    await core.create_namespaced_pod_binding(
        f"sel-{run}-a",
        NS,
        client.V1Binding(
            metadata=client.V1ObjectMeta(name=f"sel-{run}-a"),
            target=client.V1ObjectReference(kind="Node", name=f"node-{run}"),
        ),
        _preload_content=False,
    )
    await core.patch_namespaced_pod_status(f"sel-{run}-a", NS, {"status": {"phase": "Running"}})

    async def names(label: str = "", field: str = "") -> set[str]:
        sel = f"run={run}" + (f",{label}" if label else "")
        res = await core.list_namespaced_pod(NS, label_selector=sel, field_selector=field)
        return {p.metadata.name.rsplit("-", 1)[1] for p in res.items}

    assert await names() == {"a", "b", "c"}
    assert await names("tier=web") == {"a", "c"}
    assert await names("tier==web,env=prod") == {"a"}
    assert await names("tier!=web") == {"b"}
    assert await names("tier in (db, web),env") == {"a", "b"}
    assert await names("tier notin (web)") == {"b"}
    assert await names("!env") == {"c"}
    assert await names(field=f"metadata.name=sel-{run}-b") == {"b"}
    assert await names(field=f"metadata.namespace={NS},status.phase=Running") == {"a"}
    assert await names(field="status.phase!=Running") == {"b", "c"}
    assert await names(field=f"spec.nodeName=node-{run}") == {"a"}
    await core.delete_collection_namespaced_pod(
        NS, label_selector=f"run={run}", grace_period_seconds=0
    )


async def test_label_selected_lists_follow_relabels_and_deletions(
    api: client.ApiClient,
) -> None:
    core = client.CoreV1Api(api)
    run = uuid.uuid4().hex[:8]
    for i in range(3):
        await core.create_namespaced_pod(NS, pod_body(f"rel-{run}-{i}", {"run": run, "n": "a"}))

    async def names(sel: str) -> set[str]:
        res = await core.list_namespaced_pod(NS, label_selector=sel)
        return {p.metadata.name.rsplit("-", 1)[1] for p in res.items}

    await core.patch_namespaced_pod(f"rel-{run}-1", NS, {"metadata": {"labels": {"n": "b"}}})
    assert await names(f"run={run},n=a") == {"0", "2"}
    assert await names(f"run={run},n=b") == {"1"}
    await core.patch_namespaced_pod(f"rel-{run}-2", NS, {"metadata": {"labels": {"run": None}}})
    assert await names(f"run={run}") == {"0", "1"}
    await core.delete_namespaced_pod(f"rel-{run}-0", NS, grace_period_seconds=0)
    await eventually(lambda: _listed_only(core, f"run={run}", {f"rel-{run}-1"}))
    for i in (1, 2):
        await core.delete_namespaced_pod(f"rel-{run}-{i}", NS, grace_period_seconds=0)


async def _listed_only(core: client.CoreV1Api, sel: str, expected: set[str]) -> bool:
    res = await core.list_namespaced_pod(NS, label_selector=sel)
    return {p.metadata.name for p in res.items} == expected


async def test_watch_resumes_after_resource_version(api: client.ApiClient) -> None:
    co = client.CustomObjectsApi(api)
    name = uniq("ts")
    ts = await co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, ts_body(name))
    await co.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, name, {"status": {"phase": "Pending"}}, _content_type=MERGE
    )
    mark = await co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    since = mark["metadata"]["resourceVersion"]
    await co.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, name, {"status": {"phase": "Running"}}, _content_type=MERGE
    )
    await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)

    seen: list[tuple[str, str | None]] = []
    w = watch.Watch()
    async with w.stream(
        co.list_namespaced_custom_object,
        GROUP,
        VERSION,
        NS,
        PLURAL,
        resource_version=since,
        field_selector=f"metadata.name={name}",
        timeout_seconds=1,
    ) as stream:
        async for ev in stream:
            seen.append((ev["type"], ev["object"].get("status", {}).get("phase")))
            if ev["type"] == "DELETED":
                break
    assert seen == [("MODIFIED", "Running"), ("DELETED", "Running")]
    assert ts["metadata"]["uid"]


async def test_watch_live_events_cluster_wide_and_bookmarks(api: client.ApiClient) -> None:
    co = client.CustomObjectsApi(api)
    name = uniq("ts")
    listed = await co.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    rv = listed["metadata"]["resourceVersion"]
    seen: list[str] = []

    async def produce() -> None:
        await asyncio.sleep(0.2)
        await co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, ts_body(name))
        await co.patch_namespaced_custom_object_status(
            GROUP, VERSION, NS, PLURAL, name, {"status": {"phase": "Running"}}, _content_type=MERGE
        )
        await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)

    task = asyncio.create_task(produce())
    w = watch.Watch()
    async with w.stream(
        co.list_cluster_custom_object,
        GROUP,
        VERSION,
        PLURAL,
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    ) as stream:
        async for ev in stream:
            if ev["type"] != "BOOKMARK" and ev["object"]["metadata"]["name"] == name:
                seen.append(ev["type"])
            if ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == name:
                break
    await task
    assert seen == ["ADDED", "MODIFIED", "DELETED"]


async def test_watch_from_expired_resource_version_is_410(api: client.ApiClient) -> None:
    co = client.CustomObjectsApi(api)
    # "1" is older than any watch cache keeps (on the emulator: older than the CRD itself).
    w = watch.Watch()
    with pytest.raises(ApiException) as ei:
        async with w.stream(
            co.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            resource_version="1",
            timeout_seconds=2,
        ) as stream:
            async for _ in stream:
                pass
    assert ei.value.status == 410


async def test_binding_and_graceful_pod_deletion(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = uniq("gp")
    await core.create_namespaced_pod(NS, pod_body(name, termination_grace_period_seconds=12))
    await core.create_namespaced_pod_binding(
        name,
        NS,
        client.V1Binding(
            metadata=client.V1ObjectMeta(name=name),
            target=client.V1ObjectReference(kind="Node", name="node-x"),
        ),
        _preload_content=False,
    )  # the answer is a Status, which V1Binding cannot parse
    pod = await core.read_namespaced_pod(name, NS)
    assert pod.spec.node_name == "node-x"
    sched = [c for c in pod.status.conditions or [] if c.type == "PodScheduled"]
    assert sched and sched[0].status == "True"

    # Pod specs are immutable apart from a few fields; nodeName is set through binding only.
    with pytest.raises(ApiException) as ei:
        await core.patch_namespaced_pod(name, NS, {"spec": {"nodeName": "node-y"}})
    assert ei.value.status == 422

    await core.delete_namespaced_pod(name, NS)
    pod = await core.read_namespaced_pod(name, NS)  # a kubelet has to confirm the kill
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 12
    await core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
    await eventually(lambda: gone(lambda: core.read_namespaced_pod(name, NS)))

    # Without a node there is no kubelet to wait for: the pod goes at once.
    other = uniq("gp")
    await core.create_namespaced_pod(NS, pod_body(other))
    await core.delete_namespaced_pod(
        other, NS, body=client.V1DeleteOptions(grace_period_seconds=30)
    )
    await eventually(lambda: gone(lambda: core.read_namespaced_pod(other, NS)))


async def test_owner_reference_garbage_collection(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    co = client.CustomObjectsApi(api)
    owner_name = uniq("owner")
    owner = await co.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, ts_body(owner_name)
    )
    ref = client.V1OwnerReference(
        api_version=f"{GROUP}/{VERSION}",
        kind="TrainingSession",
        name=owner_name,
        uid=owner["metadata"]["uid"],
        controller=True,
        block_owner_deletion=True,
    )
    dep = uniq("dep")
    await core.create_namespaced_secret(
        NS,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=dep, owner_references=[ref]), string_data={"a": "b"}
        ),
    )
    await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, owner_name)
    await eventually(lambda: gone(lambda: core.read_namespaced_secret(dep, NS)))

    # Orphan propagation leaves dependents, minus the owner reference.
    owner_name = uniq("owner")
    owner = await co.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, ts_body(owner_name)
    )
    ref.name, ref.uid = owner_name, owner["metadata"]["uid"]
    dep = uniq("dep")
    await core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=dep, owner_references=[ref]))
    )
    await co.delete_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, owner_name, propagation_policy="Orphan"
    )

    async def orphaned() -> bool:
        cm = await core.read_namespaced_config_map(dep, NS)
        return not cm.metadata.owner_references

    await eventually(orphaned)
    await core.delete_namespaced_config_map(dep, NS)


async def test_finalizers_hold_deletion(api: client.ApiClient) -> None:
    co = client.CustomObjectsApi(api)
    name = uniq("fin")
    body = ts_body(name)
    body["metadata"]["finalizers"] = ["pivot.dev/test"]
    await co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    ts = await co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert ts["metadata"]["deletionTimestamp"]
    rv = ts["metadata"]["resourceVersion"]
    await co.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, name, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    assert await gone(lambda: co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name))
    w = watch.Watch()
    events = []
    async with w.stream(
        co.list_namespaced_custom_object,
        GROUP,
        VERSION,
        NS,
        PLURAL,
        resource_version=rv,
        field_selector=f"metadata.name={name}",
        timeout_seconds=1,
    ) as stream:
        async for ev in stream:
            events.append(ev["type"])
            if ev["type"] == "DELETED":
                break
    assert events == ["DELETED"]


async def test_watch_sees_concurrent_writes_in_order(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = uniq("order")
    cm = await core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"n": "0"})
    )
    writes = 100
    await asyncio.gather(
        *(
            core.patch_namespaced_config_map(name, NS, {"data": {f"k{i}": "v"}})
            for i in range(writes)
        )
    )
    rvs: list[int] = []
    w = watch.Watch()
    async with w.stream(
        core.list_namespaced_config_map,
        NS,
        field_selector=f"metadata.name={name}",
        resource_version=cm.metadata.resource_version,
        timeout_seconds=2,
    ) as stream:
        async for ev in stream:
            assert ev["type"] == "MODIFIED"
            rvs.append(int(ev["object"].metadata.resource_version))
            if len(rvs) == writes:
                break
    assert len(rvs) == writes and rvs == sorted(set(rvs))
    final = await core.read_namespaced_config_map(name, NS)
    assert len(final.data) == writes + 1  # no lost update
    await core.delete_namespaced_config_map(name, NS)
