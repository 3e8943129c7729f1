"""The real kopf operator runs its create/finalizer/delete cycle against the target."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kubernetes_asyncio import client, config

from tests.support.targets import KubeTarget
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

NS = "default"
GROUP, VERSION, PLURAL = "pivot.dev", "v1alpha1", "trainingsessions"
MERGE = "application/merge-patch+json"


class Seen:
    def __init__(self) -> None:
        self.created: list[str] = []
        self.deleted: list[str] = []


@pytest.fixture(scope="module")
async def operator(kube: KubeTarget) -> AsyncIterator[Seen]:
    seen = Seen()
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        cfg = client.Configuration()
        await config.load_kube_config(config_file=str(kube.kubeconfig), client_configuration=cfg)
        token = (cfg.api_key or {}).get("authorization", "").removeprefix("Bearer ").strip()
        return kopf.ConnectionInfo(
            server=cfg.host,
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            scheme="Bearer" if token else None,
            token=token or None,
            certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file,
            default_namespace=NS,
        )

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="pivot.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="pivot.dev")
        settings.watching.server_timeout = 30
        settings.watching.reconnect_backoff = 0.1

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def created(name: str, patch: kopf.Patch, **_: Any) -> None:
        seen.created.append(name)
        patch.status["phase"] = "Pending"
        patch.metadata.annotations["pivot.dev/seen"] = "yes"

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def deleted(name: str, **_: Any) -> None:
        seen.deleted.append(name)

    # kopf treats every task of its loop as its own (and cancels them on exit): give it a
    # loop of its own in a thread instead of the test session's loop.
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=asyncio.run,
        daemon=True,
        args=(
            kopf.operator(
                registry=registry,
                standalone=True,
                namespaces=[NS],
                clusterwide=False,
                stop_flag=stop,
                ready_flag=ready,
            ),
        ),
    )
    thread.start()
    assert await asyncio.to_thread(ready.wait, 10)
    yield seen
    stop.set()
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()


async def test_kopf_create_and_finalizer_cycle(api: client.ApiClient, operator: Seen) -> None:
    co = client.CustomObjectsApi(api)
    name = f"kopf-{uuid.uuid4().hex[:8]}"
    await co.create_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingSession",
            "metadata": {"name": name},
            "spec": {"config": {"epochs": 2}},
        },
    )

    async def handled() -> bool:
        ts = await co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return (
            ts.get("status", {}).get("phase") == "Pending"
            and ts["metadata"].get("annotations", {}).get("pivot.dev/seen") == "yes"
        )

    await eventually(handled, what="the create handler and the finalizer")
    ts = await co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert ts["metadata"].get("finalizers")  # kopf guards the delete handler with one
    assert any(k.startswith("pivot.dev/") for k in ts["metadata"]["annotations"])
    assert operator.created.count(name) == 1

    await co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)

    async def removed() -> bool:
        try:
            await co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        except client.ApiException as e:
            return e.status == 404
        return False

    await eventually(removed, what="the finalizer to let the object go")
    assert operator.deleted == [name] or name in operator.deleted
    assert operator.created.count(name) == 1  # no re-run of the create handler
