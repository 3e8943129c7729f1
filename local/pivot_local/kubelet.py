"""A process kubelet: runs each pod bound to its node as a local subprocess.

It is the emulator's scheduler and kubelet in one: unbound pods are bound to this node via the
`binding` subresource, then their container command runs with the pod's env (values, Secret and
ConfigMap references, the downward API for name/namespace), logs go to a file, phase and exit
codes are reported through the `status` subresource, and a deleted pod's process gets SIGTERM,
then SIGKILL after the grace period, before the kubelet finalises the deletion.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from pivot_local.procs import free_port, run_in_thread, spawn
from pivot_schema.kubeclient import without_env_lookups
from pivot_schema.leases import NODE_LEASE_NAMESPACE, lease_manifest, renewed

log = logging.getLogger("pivot.kubelet")

MERGE_PATCH = "application/merge-patch+json"
NODE_NAME = "pivot-local"
# A real kubelet's node lease: 40 s, renewed every quarter of that.
NODE_LEASE_SECONDS = 40
# Host variables a "container" may need to run on this machine; nothing else leaks in.
PASSTHROUGH_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)


# -- cluster networking, emulated -----------------------------------------------------------
# Every pod runs on this one host, so the little of cluster DNS a distributed trainer needs is
# emulated on its env and arguments: a cluster DNS name (`*.svc`, `*.svc.cluster.local`)
# resolves to 127.0.0.1, and each headless service's rendezvous port (MASTER_PORT) becomes a
# free local port, the same for all pods of that service, so two gangs never collide.
CLUSTER_DNS_SUFFIXES = (".svc", ".svc.cluster.local")
MASTER_PORT_ENV = "MASTER_PORT"
MASTER_PORT_FLAGS = ("--master-port", "--master_port")


def localize_host(value: str) -> str:
    """`host`, `--flag=host` or `host:port` with a cluster DNS host -> the same on 127.0.0.1."""
    prefix, sep, rest = value.rpartition("=") if value.startswith("--") else ("", "", value)
    host, colon, port = rest.partition(":")
    if host.endswith(CLUSTER_DNS_SUFFIXES):
        return f"{prefix}{sep}127.0.0.1{colon}{port}"
    return value


def remap_master_port(env: dict[str, str], argv: list[str], port: int) -> list[str]:
    """MASTER_PORT and torchrun's --master-port set to the service's local port."""
    env[MASTER_PORT_ENV] = str(port)
    return [
        f"{a.split('=', 1)[0]}={port}" if a.split("=", 1)[0] in MASTER_PORT_FLAGS else a
        for a in argv
    ]


async def _checked(call: Any) -> dict[str, Any]:
    """kubernetes_asyncio does not check the status of `_preload_content=False` calls."""
    resp = await call
    body = await resp.read()
    if not 200 <= resp.status < 300:
        raise ApiException(status=resp.status, reason=resp.reason)
    return dict(json.loads(body)) if body else {}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _exit_code(returncode: int) -> int:
    """Container-style exit code: death by signal N reads as 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def gpu_count() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


@dataclass
class _Running:
    proc: subprocess.Popen[bytes]
    namespace: str
    name: str
    started_at: str
    log_path: Path
    ip: str = "127.0.0.1"
    killing: bool = False
    ready: bool = True
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class ProcessKubelet:
    def __init__(
        self,
        kubeconfig: str | Path,
        work_dir: str | Path,
        *,
        node_name: str = NODE_NAME,
        python: str = sys.executable,
        lease_seconds: int = NODE_LEASE_SECONDS,
    ):
        self.kubeconfig = str(kubeconfig)
        self.lease_seconds = lease_seconds
        self.work_dir = Path(work_dir)
        self.node_name = node_name
        self.python = python
        self.running: dict[str, _Running] = {}
        self._finished: set[str] = set()
        # (namespace, headless service) -> the local port standing in for its MASTER_PORT.
        self._service_ports: dict[tuple[str, str], int] = {}
        # Pod IPs handed out: each pod its own loopback address (127.A.B.2, 127.A.B.3, ...),
        # so that several pods bind the same containerPort, as on a cluster.
        self._ips: dict[str, str] = {}
        # This kubelet's block of 127.0.0.0/8 (a /24 picked at random, 127.A.B.2 onwards): two
        # platforms on one machine (the tests start several) hand out different addresses.
        self._ip_base = random.randrange(1, 255) << 16 | random.randrange(256) << 8
        self._tasks: set[asyncio.Future[None]] = set()
        self._api: client.ApiClient | None = None
        self._core: client.CoreV1Api | None = None
        self._stopping = asyncio.Event()
        self._watch_task: asyncio.Future[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._node_lease: dict[str, Any] | None = None  # as last written

    @property
    def core(self) -> client.CoreV1Api:
        assert self._core is not None, "kubelet not started"
        return self._core

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        cfg = client.Configuration()
        await config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        self._api = without_env_lookups(client.ApiClient(cfg))
        self._core = client.CoreV1Api(self._api)
        try:
            await self._register_node()
            self._lease_task = asyncio.create_task(self._heartbeat())
            while not self._stopping.is_set():
                self._watch_task = asyncio.ensure_future(self._list_and_watch())
                try:
                    await self._watch_task
                except asyncio.CancelledError:
                    if not self._stopping.is_set():
                        raise
                except (TimeoutError, ApiException, OSError) as exc:
                    if self._stopping.is_set():
                        break
                    log.warning("pod watch broke (%s); re-listing", exc)
                    await asyncio.sleep(0.5)
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop every pod process (SIGTERM, then SIGKILL) and close the client."""
        self._stopping.set()
        if self._lease_task is not None:
            self._lease_task.cancel()
        everything = list(self.running.values())
        for running in everything:
            await self._kill(running, grace=5.0)
        self.running.clear()
        # Exit watchers, probes and pending deletions (of exited pods too) end with the kubelet.
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._api is not None:
            await self._api.close()
            self._api = None

    def log_path(self, namespace: str, pod: str, container: str) -> Path | None:
        """The newest log file of a pod's container (what `kubectl logs` shows)."""
        candidates = sorted(
            (self.work_dir / "pods").glob(f"{namespace}_{pod}_*/{container}.log"),
            key=lambda p: p.stat().st_mtime,
        )
        return candidates[-1] if candidates else None

    def stop(self) -> None:
        """Ask run() to finish: it stops watching, then kills every pod process."""
        self._stopping.set()
        if self._watch_task is not None:
            self._watch_task.cancel()

    async def _register_node(self) -> None:
        cpu = os.cpu_count() or 1
        mem_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
        capacity = {
            "cpu": str(cpu),
            "memory": f"{mem_kib}Ki",
            "pods": "110",
            "nvidia.com/gpu": str(gpu_count()),
        }
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "node.kubernetes.io/instance-type": "pivot-local",
                },
            },
        }
        with contextlib.suppress(ApiException):
            await _checked(self.core.create_node(node, _preload_content=False))
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "pivot process kubelet is posting ready status",
                    "lastHeartbeatTime": _now(),
                    "lastTransitionTime": _now(),
                }
            ],
            "nodeInfo": {"kubeletVersion": "pivot-local", "operatingSystem": "linux"},
        }
        await _checked(
            self.core.patch_node_status(
                self.node_name,
                {"status": status},
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
        )

    async def _heartbeat(self) -> None:
        """Renew the node's Lease in kube-node-lease every quarter of its duration, as a real
        kubelet does: /health reads it to call the kubelet alive."""
        while not self._stopping.is_set():
            try:
                await self._renew_node_lease()
            except Exception as exc:  # the next round reads the lease again
                self._node_lease = None
                log.warning("could not renew the node lease: %s", exc)
            await asyncio.sleep(self.lease_seconds / 4)

    async def _renew_node_lease(self) -> None:
        coordination = client.CoordinationV1Api(self._api)
        ns, name, now = NODE_LEASE_NAMESPACE, self.node_name, datetime.now(UTC)
        if self._node_lease is None:
            try:
                self._node_lease = await _checked(
                    coordination.read_namespaced_lease(name, ns, _preload_content=False)
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                body = lease_manifest(name, ns, name, self.lease_seconds, now)
                self._node_lease = await _checked(
                    coordination.create_namespaced_lease(ns, body, _preload_content=False)
                )
                return
        body = renewed(self._node_lease, name, self.lease_seconds, now)
        self._node_lease = await _checked(
            coordination.replace_namespaced_lease(name, ns, body, _preload_content=False)
        )

    async def _list_and_watch(self) -> None:
        listing = await _checked(self.core.list_pod_for_all_namespaces(_preload_content=False))
        for pod in listing.get("items", []):
            await self._handle(pod)
        rv = listing["metadata"]["resourceVersion"]
        w = watch.Watch()
        try:
            async for event in w.stream(
                self.core.list_pod_for_all_namespaces,
                resource_version=rv,
                timeout_seconds=300,
                allow_watch_bookmarks=True,
            ):
                if self._stopping.is_set():
                    return
                if event["type"] == "ERROR":
                    return  # e.g. 410 Gone: re-list
                if event["type"] in ("ADDED", "MODIFIED"):
                    await self._handle(event["raw_object"])
                elif event["type"] == "DELETED":
                    uid = event["raw_object"]["metadata"].get("uid")
                    # Forget the pod: the kubelet's memory stays bounded over a long run.
                    self._finished.discard(uid)
                    running = self.running.get(uid)
                    if running is not None:
                        await self._kill(running, grace=0)
        finally:
            w.stop()

    # -- reconciling one pod ---------------------------------------------------------------

    async def _handle(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        spec = pod.get("spec") or {}
        uid = meta["uid"]
        node = spec.get("nodeName")
        if meta.get("deletionTimestamp"):
            if node not in (None, self.node_name):
                return
            running = self.running.get(uid)
            if running is None:
                await self._finalize_deletion(meta)
            elif not running.killing:
                grace = float(meta.get("deletionGracePeriodSeconds") or 30)
                running.killing = True
                self._spawn_task(running, self._kill_then_finalize(running, meta, grace))
            return
        if not node:
            await self._bind(meta, spec)
            return
        if node != self.node_name:
            return
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        if uid in self.running or uid in self._finished:
            return
        if phase == "Pending":
            await self._start(pod)
        elif phase == "Running":
            # Its process belonged to an earlier kubelet and died with it.
            self._finished.add(uid)
            await self._patch_status(
                meta,
                {
                    "phase": "Failed",
                    "reason": "ContainerLost",
                    "message": "the process kubelet restarted and the container process is gone",
                },
            )

    def _spawn_task(self, running: _Running, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        running.tasks.add(task)
        task.add_done_callback(running.tasks.discard)
        # Also held here: a pod that has exited leaves `running`, its probe may still sleep.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bind(self, meta: dict[str, Any], spec: dict[str, Any]) -> None:
        if spec.get("schedulerName") not in (None, "default-scheduler"):
            return  # another scheduler's pod (Kueue/Volcano) stays Pending, as on a real cluster
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            await _checked(
                self.core.create_namespaced_pod_binding(
                    meta["name"], meta["namespace"], body, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _allocate_ip(self, uid: str) -> str:
        """The lowest address of this kubelet's block that no running pod holds (all of
        127.0.0.0/8 is local on Linux: nothing to configure)."""
        taken = set(self._ips.values())
        for n in range(self._ip_base, self._ip_base + 65536):
            ip = f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            if n & 255 not in (0, 1, 255) and ip not in taken:
                self._ips[uid] = ip
                return ip
        raise ValueError("no loopback address left for another pod")

    async def _resolve_env(
        self, namespace: str, pod: dict[str, Any], container: dict[str, Any]
    ) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        cache: dict[tuple[str, str], dict[str, str]] = {}

        async def source(kind: str, name: str) -> dict[str, str]:
            if (kind, name) not in cache:
                if kind == "secret":
                    secret = await _checked(
                        self.core.read_namespaced_secret(name, namespace, _preload_content=False)
                    )
                    data = secret.get("data") or {}
                    cache[(kind, name)] = {k: base64.b64decode(v).decode() for k, v in data.items()}
                else:
                    cm = await _checked(
                        self.core.read_namespaced_config_map(
                            name, namespace, _preload_content=False
                        )
                    )
                    cache[(kind, name)] = cm.get("data") or {}
            return cache[(kind, name)]

        meta = pod["metadata"]
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            ref = item.get("valueFrom") or {}
            if "secretKeyRef" in ref:
                r = ref["secretKeyRef"]
                env[item["name"]] = (await source("secret", r["name"]))[r["key"]]
            elif "configMapKeyRef" in ref:
                r = ref["configMapKeyRef"]
                env[item["name"]] = (await source("configmap", r["name"]))[r["key"]]
            elif "fieldRef" in ref:
                path = ref["fieldRef"]["fieldPath"]
                env[item["name"]] = {
                    "metadata.name": meta["name"],
                    "metadata.namespace": meta["namespace"],
                    "metadata.uid": meta["uid"],
                    "spec.nodeName": self.node_name,
                    "status.podIP": self._ips.get(meta["uid"], "127.0.0.1"),
                    "status.hostIP": "127.0.0.1",
                }.get(path, "")
        return env

    def _argv(self, container: dict[str, Any]) -> list[str]:
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        if not argv:
            raise ValueError("the container has no command: images' entrypoints cannot run locally")
        if argv[0] in ("python", "python3"):
            argv[0] = self.python  # the image's Python is this environment's
        elif argv[0] == "torchrun":
            argv[:1] = [self.python, "-m", "torch.distributed.run"]
        return [localize_host(a) for a in argv]

    def _emulate_cluster_network(
        self, pod: dict[str, Any], env: dict[str, str], argv: list[str]
    ) -> list[str]:
        for key, value in env.items():
            env[key] = localize_host(value)
        subdomain = (pod.get("spec") or {}).get("subdomain")
        if subdomain and (
            MASTER_PORT_ENV in env or any(a.split("=", 1)[0] in MASTER_PORT_FLAGS for a in argv)
        ):
            key = (pod["metadata"]["namespace"], subdomain)
            port = self._service_ports.setdefault(key, free_port())
            argv = remap_master_port(env, argv, port)
        return argv

    async def _start(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        containers = (pod.get("spec") or {}).get("containers") or []
        uid = meta["uid"]
        if not containers:
            return
        container = containers[0]
        pod_dir = self.work_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{uid[:8]}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        log_path = pod_dir / f"{container['name']}.log"
        ip = self._allocate_ip(uid)
        try:
            env = await self._resolve_env(meta["namespace"], pod, container)
            argv = self._emulate_cluster_network(pod, env, self._argv(container))
        except (ApiException, KeyError, ValueError) as exc:
            self._ips.pop(uid, None)
            # A real kubelet reports CreateContainerConfigError and keeps the pod Pending.
            reason = "CreateContainerConfigError"
            await self._patch_status(
                meta,
                {
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "ready": False,
                            "restartCount": 0,
                            "image": container.get("image", ""),
                            "imageID": "",
                            "state": {"waiting": {"reason": reason, "message": str(exc)}},
                        }
                    ],
                },
            )
            return
        with open(log_path, "ab") as out:  # noqa: ASYNC230 - a local append-open, no wait
            proc = spawn(argv, env=env, cwd=pod_dir, stdout=out, stderr=subprocess.STDOUT)
        started = _now()
        probe = container.get("readinessProbe")
        running = _Running(
            proc, meta["namespace"], meta["name"], started, log_path, ip, ready=probe is None
        )
        self.running[uid] = running
        log.info("pod %s/%s started as pid %d on %s", meta["namespace"], meta["name"], proc.pid, ip)
        await self._patch_status(
            meta,
            {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": started,
                "conditions": self._conditions(ready=running.ready),
                "containerStatuses": [
                    self._container_status(
                        container, proc.pid, {"running": {"startedAt": started}}, running.ready
                    )
                ],
            },
        )
        if probe is not None:
            self._spawn_task(running, self._probe_readiness(meta, container, running, probe))
        self._spawn_task(running, self._watch_exit(uid, meta, container, running))

    @staticmethod
    def _conditions(*, ready: bool) -> list[dict[str, Any]]:
        now = _now()
        status = "True" if ready else "False"
        return [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
            {"type": "Ready", "status": status, "lastTransitionTime": now},
        ]

    @staticmethod
    def _container_status(
        container: dict[str, Any], pid: int, state: dict[str, Any], ready: bool = True
    ) -> dict[str, Any]:
        return {
            "name": container["name"],
            "ready": "running" in state and ready,
            "started": "running" in state,
            "restartCount": 0,
            "image": container.get("image", ""),
            "imageID": "",
            "containerID": f"pid://{pid}",
            "state": state,
        }

    async def _watch_exit(
        self, uid: str, meta: dict[str, Any], container: dict[str, Any], running: _Running
    ) -> None:
        while running.proc.poll() is None:
            await asyncio.sleep(0.2)
        code = _exit_code(running.proc.returncode)
        self._finished.add(uid)
        self.running.pop(uid, None)
        self._ips.pop(uid, None)
        log.info("pod %s/%s exited with %d", running.namespace, running.name, code)
        if running.killing:
            return  # being deleted: the deletion, not the exit, is what happened
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": running.started_at,
            "finishedAt": _now(),
        }
        if code != 0:
            terminated["message"] = _tail(running.log_path)
        with contextlib.suppress(ApiException):
            await self._patch_status(
                meta,
                {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "conditions": self._conditions(ready=False),
                    "containerStatuses": [
                        self._container_status(
                            container, running.proc.pid, {"terminated": terminated}
                        )
                    ],
                },
            )

    async def _probe_readiness(
        self,
        meta: dict[str, Any],
        container: dict[str, Any],
        running: _Running,
        probe: dict[str, Any],
    ) -> None:
        """A readinessProbe (httpGet or tcpSocket) against the pod's own address, with the
        probe's delay, period, timeout and thresholds; Ready follows it, as endpoints do."""
        period = max(0.1, float(probe.get("periodSeconds") or 10))
        timeout = max(0.1, float(probe.get("timeoutSeconds") or 1))
        needed_ok = int(probe.get("successThreshold") or 1)
        needed_fail = int(probe.get("failureThreshold") or 3)
        await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0))
        ok = fail = 0
        while running.proc.poll() is None and not running.killing:
            try:
                async with asyncio.timeout(timeout):
                    passed = await _probe_once(probe, container, running.ip)
            except TimeoutError:
                passed = False
            ok, fail = (ok + 1, 0) if passed else (0, fail + 1)
            flip = (not running.ready and ok >= needed_ok) or (
                running.ready and fail >= needed_fail
            )
            if flip and running.proc.poll() is None and not running.killing:
                running.ready = not running.ready
                log.info("pod %s/%s ready: %s", running.namespace, running.name, running.ready)
                state = {"running": {"startedAt": running.started_at}}
                with contextlib.suppress(ApiException):
                    await self._patch_status(
                        meta,
                        {
                            "conditions": self._conditions(ready=running.ready),
                            "containerStatuses": [
                                self._container_status(
                                    container, running.proc.pid, state, running.ready
                                )
                            ],
                        },
                    )
            await asyncio.sleep(period)

    async def _kill(self, running: _Running, grace: float) -> None:
        running.killing = True
        proc = running.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            deadline = asyncio.get_running_loop().time() + grace
            while proc.poll() is None and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait)

    async def _kill_then_finalize(
        self, running: _Running, meta: dict[str, Any], grace: float
    ) -> None:
        await self._kill(running, grace)
        await self._finalize_deletion(meta)

    async def _finalize_deletion(self, meta: dict[str, Any]) -> None:
        with contextlib.suppress(ApiException):
            await _checked(
                self.core.delete_namespaced_pod(
                    meta["name"],
                    meta["namespace"],
                    grace_period_seconds=0,
                    body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
                    _preload_content=False,
                )
            )

    async def _patch_status(self, meta: dict[str, Any], status: dict[str, Any]) -> None:
        await _checked(
            self.core.patch_namespaced_pod_status(
                meta["name"],
                meta["namespace"],
                {"status": status},
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
        )


def _probe_port(port: Any, container: dict[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for item in container.get("ports") or []:
        if item.get("name") == port:
            return int(item["containerPort"])
    raise ValueError(f"probe port {port!r} names no port of the container")


async def _probe_once(probe: dict[str, Any], container: dict[str, Any], ip: str) -> bool:
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = _probe_port(get.get("port"), container)
            path = get.get("path") or "/"
            reader, writer = await asyncio.open_connection(ip, port)
            try:
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\n"
                    "User-Agent: kube-probe/1.30\r\nConnection: close\r\n\r\n".encode()
                )
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
            parts = status_line.split()
            return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
        if "tcpSocket" in probe:
            port = _probe_port(probe["tcpSocket"].get("port"), container)
            _, writer = await asyncio.open_connection(ip, port)
            writer.close()
            return True
    except (OSError, ValueError):
        return False
    return True  # a probe kind this kubelet does not run (exec, grpc): not held against it


def _tail(path: Path, limit: int = 1024) -> str:
    """The end of a container's log: the message of a failed container, as kubelet's
    terminationMessagePolicy FallbackToLogsOnError gives."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return ""


def run_kubelet_in_thread(
    kubeconfig: str | Path, work_dir: str | Path
) -> contextlib.AbstractContextManager[ProcessKubelet]:
    """Run a kubelet on its own loop in a thread; pod processes die with that thread
    (PR_SET_PDEATHSIG is per thread), so it lives until the context exits."""
    return run_in_thread(
        lambda: ProcessKubelet(kubeconfig, work_dir), "pivot-kubelet", stop_within=30
    )
