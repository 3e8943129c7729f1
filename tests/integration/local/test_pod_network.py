"""The local platform's pod network: each pod its own loopback address (`status.podIP`), so
that pods bind the same containerPort; readiness probes run by the process kubelet; and
EndpointSlices of the Ready pods a Service selects, written as a cluster's controller does."""

from __future__ import annotations

import secrets
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pivot_local.controllers import SERVICE_NAME_LABEL, run_controllers_in_thread
from pivot_local.kube import KubeEmulator
from pivot_local.kubelet import run_kubelet_in_thread
from tests.support.targets import NEEDS_PROCESS_KUBELET, REAL_KUBECONFIG
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.process_kubelet]

# A server on the pod's own address and port 8080, Ready while the file `ready` exists in its
# working directory (the kubelet's pod dir), answering with its pod's name.
SERVER = textwrap.dedent(
    """
    import http.server, os, pathlib
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path != "/ready" or pathlib.Path("ready").exists()
            body = os.environ["POD_NAME"].encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    http.server.HTTPServer((os.environ["POD_IP"], 8080), H).serve_forever()
    """
)


@pytest.fixture(scope="module")
def cluster(kube_emulator: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if REAL_KUBECONFIG:
        pytest.skip(NEEDS_PROCESS_KUBELET)
    work = tmp_path_factory.mktemp("kubelet")
    with (
        run_kubelet_in_thread(kube_emulator.kubeconfig, work) as kubelet,
        run_controllers_in_thread(kube_emulator.kubeconfig),
    ):
        yield kubelet


@pytest.fixture
def ns(kube_emulator: KubeEmulator) -> Iterator[str]:
    name = "net-" + secrets.token_hex(3)
    httpx.post(f"{kube_emulator.url}/api/v1/namespaces", json={"metadata": {"name": name}})
    yield name
    httpx.delete(f"{kube_emulator.url}/api/v1/namespaces/{name}")


def server_pod(name: str, *, probe: bool) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "server",
        "image": "local",
        "command": [sys.executable, "-c", SERVER],
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
    }
    if probe:
        container["readinessProbe"] = {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 0.2,
            "failureThreshold": 1,
        }
    return {
        "metadata": {"name": name, "labels": {"app": "echo"}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1},
    }


def pod_dir(kubelet: Any, ns: str, name: str) -> Path:
    return next((kubelet.work_dir / "pods").glob(f"{ns}_{name}_*"))


def slice_of(kube: httpx.Client, ns: str, service: str) -> dict[str, Any] | None:
    items = kube.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
        params={"labelSelector": f"{SERVICE_NAME_LABEL}={service}"},
    ).json()["items"]
    return items[0] if items else None


def ready_addresses(kube: httpx.Client, ns: str, service: str) -> set[str]:
    found = slice_of(kube, ns, service) or {}
    return {e["addresses"][0] for e in found.get("endpoints") or [] if e["conditions"]["ready"]}


def test_pods_get_their_own_address_and_endpoint_slices_follow_readiness(
    cluster: Any, kube_emulator: KubeEmulator, ns: str
) -> None:
    kube = httpx.Client(base_url=kube_emulator.url, timeout=10)
    pods = f"/api/v1/namespaces/{ns}/pods"
    for name in ("echo-a", "echo-b"):
        assert kube.post(pods, json=server_pod(name, probe=True)).status_code == 201
    service = {
        "metadata": {"name": "echo"},
        "spec": {
            "selector": {"app": "echo"},
            "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
        },
    }
    assert kube.post(f"/api/v1/namespaces/{ns}/services", json=service).status_code == 201

    def ips() -> dict[str, str] | None:
        found = {
            n: kube.get(f"{pods}/{n}").json().get("status", {}).get("podIP")
            for n in ("echo-a", "echo-b")
        }
        return found if all(found.values()) else None

    addresses = wait_for(ips, 30, "pod IPs")
    assert len(set(addresses.values())) == 2, "two pods, two addresses"
    assert all(ip.startswith("127.") and not ip.endswith(".1") for ip in addresses.values())
    # Both bind port 8080, each on its own address, and answer there.
    for name, ip in addresses.items():
        served = wait_for(lambda ip=ip: _get(f"http://{ip}:8080/"), 30, f"{name} serving")
        assert served == name

    # Not Ready until its probe passes: the slice lists them, not ready.
    endpoint_slice = wait_for(lambda: slice_of(kube, ns, "echo"), 30, "the slice")
    assert endpoint_slice["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    assert ready_addresses(kube, ns, "echo") == set()
    pod = kube.get(f"{pods}/echo-a").json()
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "False"

    (pod_dir(cluster, ns, "echo-a") / "ready").touch()
    wait_for(lambda: ready_addresses(kube, ns, "echo") == {addresses["echo-a"]}, 30, "a ready")
    (pod_dir(cluster, ns, "echo-b") / "ready").touch()
    wait_for(lambda: ready_addresses(kube, ns, "echo") == set(addresses.values()), 30, "both")

    # A probe that fails takes the pod out again; a deleted pod leaves the slice.
    (pod_dir(cluster, ns, "echo-a") / "ready").unlink()
    wait_for(lambda: ready_addresses(kube, ns, "echo") == {addresses["echo-b"]}, 30, "a out")
    assert kube.delete(f"{pods}/echo-b").status_code == 200
    wait_for(
        lambda: (
            not (slice_of(kube, ns, "echo") or {}).get("endpoints")
            or all(
                e["targetRef"]["name"] != "echo-b" for e in slice_of(kube, ns, "echo")["endpoints"]
            )
        ),
        30,
        "b gone",
    )

    # The Service gone, its slice goes.
    assert kube.delete(f"/api/v1/namespaces/{ns}/services/echo").status_code == 200
    wait_for(lambda: slice_of(kube, ns, "echo") is None, 30, "the slice deleted")


def test_a_pod_without_a_probe_is_ready_once_running(
    cluster: Any, kube_emulator: KubeEmulator, ns: str
) -> None:
    kube = httpx.Client(base_url=kube_emulator.url, timeout=10)
    assert (
        kube.post(
            f"/api/v1/namespaces/{ns}/pods", json=server_pod("plain", probe=False)
        ).status_code
        == 201
    )
    service = {
        "metadata": {"name": "plain"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 8080}]},
    }
    assert kube.post(f"/api/v1/namespaces/{ns}/services", json=service).status_code == 201
    found = wait_for(lambda: ready_addresses(kube, ns, "plain") or None, 30, "ready address")
    assert len(found) == 1


def _get(url: str) -> str | None:
    try:
        resp = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return resp.text if resp.status_code == 200 else None
