"""The one kube-controller-manager loop the local platform needs: EndpointSlices.

On a cluster, the EndpointSlice controller keeps, for every Service with a selector, the
addresses of the Ready pods it selects; clients (kube-proxy, an ingress, PIVOT's API proxying
to model servers) read those. Here it does the same against the Kubernetes API emulator: the
process kubelet gives each pod its own loopback address (`status.podIP`, 127.A.B.2, ...) and
runs readiness probes, and this writes `discovery.k8s.io/v1` EndpointSlices from them, so that
code reading EndpointSlices runs unchanged on `pivot up` and on a cluster.

It reconciles the whole picture on every change (a watch event of a Service or a Pod, a few
dozen objects locally), one EndpointSlice per Service.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from pivot_local.procs import run_in_thread
from pivot_schema.kubeclient import without_env_lookups

log = logging.getLogger("pivot.controllers")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"

Obj = dict[str, Any]


def _selects(selector: dict[str, str], pod: Obj) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _target_port(port: Obj, pods: list[Obj]) -> int | None:
    """A Service port's targetPort as a number: itself, or the named container port of the
    selected pods (the first that has it), or the port when none is given."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for pod in pods:
        for container in (pod.get("spec") or {}).get("containers") or []:
            for item in container.get("ports") or []:
                if item.get("name") == target:
                    return int(item["containerPort"])
    return None


def slice_name(service: str) -> str:
    # A real controller uses generateName (<service>-xxxxx); a fixed suffix from the name
    # keeps exactly one slice per Service across restarts of this controller.
    return f"{service}-{hashlib.sha256(service.encode()).hexdigest()[:5]}"


def desired_slice(service: Obj, pods: list[Obj]) -> Obj:
    meta = service["metadata"]
    selector = (service.get("spec") or {}).get("selector") or {}
    selected = [
        p
        for p in pods
        if p["metadata"].get("namespace") == meta["namespace"]
        and _selects(selector, p)
        and (p.get("status") or {}).get("podIP")
        and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]
    selected.sort(key=lambda p: p["metadata"]["name"])
    endpoints = []
    for pod in selected:
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        serving = _ready(pod)
        endpoints.append(
            {
                "addresses": [pod["status"]["podIP"]],
                "conditions": {
                    "ready": serving and not terminating,
                    "serving": serving,
                    "terminating": terminating,
                },
                "targetRef": {
                    "kind": "Pod",
                    "namespace": meta["namespace"],
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
                "nodeName": (pod.get("spec") or {}).get("nodeName"),
            }
        )
    ports = []
    for port in (service.get("spec") or {}).get("ports") or []:
        number = _target_port(port, selected)
        if number is not None:
            entry: Obj = {"port": number, "protocol": port.get("protocol") or "TCP"}
            if port.get("name"):
                entry["name"] = port["name"]
            ports.append(entry)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {SERVICE_NAME_LABEL: meta["name"], MANAGED_BY_LABEL: MANAGED_BY},
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


def _content(obj: Obj) -> str:
    return json.dumps(
        [obj.get("endpoints") or [], obj.get("ports") or [], obj["metadata"].get("labels")],
        sort_keys=True,
    )


class EndpointSliceController:
    """Services and pods are held in memory from their watches (informers); each change
    recomputes the slices and writes the ones whose content changed."""

    def __init__(self, kubeconfig: str | Path) -> None:
        self.kubeconfig = str(kubeconfig)
        self._stopping = asyncio.Event()
        self._dirty = asyncio.Event()
        self._services: dict[str, Obj] = {}
        self._pods: dict[str, Obj] = {}
        self._synced: set[str] = set()
        self._written: dict[tuple[str, str], str] = {}  # slice -> content last written

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()

    async def run(self) -> None:
        cfg = client.Configuration()
        await config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        api = without_env_lookups(client.ApiClient(cfg))
        core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
        watchers = [
            asyncio.create_task(
                self._inform("services", core.list_service_for_all_namespaces, self._services)
            ),
            asyncio.create_task(self._inform("pods", core.list_pod_for_all_namespaces, self._pods)),
        ]
        try:
            existing = await _items(
                discovery.list_endpoint_slice_for_all_namespaces(
                    label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}", _preload_content=False
                )
            )
            self._written = {
                (s["metadata"]["namespace"], s["metadata"]["name"]): _content(s) for s in existing
            }
            while not self._stopping.is_set():
                await self._dirty.wait()
                await asyncio.sleep(0.02)  # a burst of events, one reconcile
                self._dirty.clear()
                if self._stopping.is_set():
                    break
                if len(self._synced) < 2:
                    continue  # a partial picture would delete slices that are right
                try:
                    await self._reconcile(discovery)
                except (ApiException, OSError, TimeoutError) as exc:
                    log.warning("endpoint slices: %s; trying again", exc)
                    await asyncio.sleep(0.5)
                    self._dirty.set()
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await api.close()

    async def _inform(self, kind: str, lister: Any, store: dict[str, Obj]) -> None:
        """List, then watch from the list's version; again after any break."""
        while not self._stopping.is_set():
            try:
                listing = await _send(lister(_preload_content=False))
                store.clear()
                for obj in listing.get("items") or []:
                    store[obj["metadata"]["uid"]] = obj
                self._synced.add(kind)
                self._dirty.set()
                rv = (listing.get("metadata") or {}).get("resourceVersion")
                async for event in watch.Watch().stream(
                    lister, resource_version=rv, timeout_seconds=300
                ):
                    obj = event["raw_object"]
                    if event["type"] == "ERROR":
                        break  # 410 Gone: list again
                    uid = (obj.get("metadata") or {}).get("uid")
                    if uid is None:
                        continue
                    if event["type"] == "DELETED":
                        store.pop(uid, None)
                    else:
                        store[uid] = obj
                    self._dirty.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("endpoint slices: %s watch ended (%s)", kind, exc)
                await asyncio.sleep(0.5)

    async def _reconcile(self, discovery: client.DiscoveryV1Api) -> None:
        pods = list(self._pods.values())
        wanted: set[tuple[str, str]] = set()
        for service in list(self._services.values()):
            if not (service.get("spec") or {}).get("selector"):
                continue  # a Service without a selector keeps the slices its owner writes
            desired = desired_slice(service, pods)
            ns, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
            wanted.add((ns, name))
            content = _content(desired)
            if self._written.get((ns, name)) == content:
                continue
            # Replace (unconditionally: this controller is the slice's only writer), or
            # create when it is not there.
            replaced = await _send(
                discovery.replace_namespaced_endpoint_slice(
                    name, ns, desired, _preload_content=False
                ),
                missing_ok=True,
            )
            if not replaced:
                await _send(
                    discovery.create_namespaced_endpoint_slice(ns, desired, _preload_content=False)
                )
            self._written[(ns, name)] = content
        for ns, name in self._written.keys() - wanted:
            await _send(
                discovery.delete_namespaced_endpoint_slice(name, ns, _preload_content=False),
                missing_ok=True,
            )
            del self._written[(ns, name)]


async def _items(call: Any) -> list[Obj]:
    return list((await _send(call)).get("items") or [])


async def _send(call: Any, *, missing_ok: bool = False) -> Obj:
    """A raw call's JSON; {} for a 404 when `missing_ok`."""
    resp = await call
    try:
        if resp.status == 404 and missing_ok:
            return {}
        if not 200 <= resp.status < 300:
            raise ApiException(status=resp.status, reason=resp.reason)
        return dict(json.loads(await resp.read() or b"{}"))
    finally:
        resp.release()


def run_controllers_in_thread(
    kubeconfig: str | Path,
) -> contextlib.AbstractContextManager[EndpointSliceController]:
    """The controller on its own loop in a thread, until the context exits."""
    return run_in_thread(
        lambda: EndpointSliceController(kubeconfig), "pivot-controllers", stop_within=10
    )
