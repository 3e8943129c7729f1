"""Model serving through the API: ModelServer resources written and read as the reference's
other resources are, and predictions forwarded to the Ready pods a Service's EndpointSlices
list. Here the pods are stand-in HTTP servers on their own loopback addresses (what the pods'
server answers is tested with the real server in tests/integration/serve); what is under test
is the API: its resources, the choice of pod, and what it does when pods fail or drain."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from pivot_local.procs import free_port
from pivot_schema.crd import GROUP, VERSION
from pivot_schema.modelserver import MS_PLURAL

from .api_platform import Platform

pytestmark = pytest.mark.integration

SHA = "c" * 64


class Pod:
    """An HTTP server on its own loopback address answering /predict with `status`, naming
    itself; `closed` drops connections as a pod that died would."""

    def __init__(self, ip: str, port: int, status: int = 200) -> None:
        self.ip, self.port, self.status, self.hits = ip, port, status, 0
        pod = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                pod.hits += 1
                answer = json.dumps(
                    {
                        "pod": pod.ip,
                        "got": len(body),
                        "query": self.path.partition("?")[2],
                        "type": self.headers.get("content-type"),
                    }
                ).encode()
                self.send_response(pod.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((ip, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pods() -> Iterator[list[Pod]]:
    # One containerPort, as a Deployment's pods have: each on its own address.
    port = free_port("127.0.0.21")
    made = [Pod("127.0.0.21", port), Pod("127.0.0.22", port)]
    yield made
    for pod in made:
        pod.stop()


async def endpoints(platform: Platform, name: str, ready: list[tuple[Pod, bool]]) -> None:
    """The EndpointSlice a cluster keeps for the server's Service."""
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-abcde", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [pod.ip], "conditions": {"ready": ok}} for pod, ok in ready],
        "ports": [{"name": "http", "port": ready[0][0].port if ready else 8080}],
    }
    async with httpx.AsyncClient(base_url=_kube_url(platform)) as kube:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{platform.namespace}/endpointslices"
        await kube.delete(f"{path}/{name}-abcde")
        resp = await kube.post(path, json=body)
        assert resp.status_code == 201, resp.text


async def server_status(platform: Platform, name: str, **status: Any) -> None:
    """The ModelServer's status as the operator would write it."""
    await platform.objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        platform.namespace,
        MS_PLURAL,
        name,
        {"status": status},
        _content_type="application/merge-patch+json",
    )


def _kube_url(platform: Platform) -> str:
    import yaml

    with open(platform.app.state.settings.kubeconfig) as fh:
        config = yaml.safe_load(fh)
    return str(config["clusters"][0]["cluster"]["server"])


async def test_deploy_list_get_update_delete(platform: Platform) -> None:
    http = platform.http
    resp = await http.post(
        "/api/v1/models",
        json={
            "name": "lesions",
            "session_id": "sess-abc",
            "replicas": 2,
            "batching": {"max_batch_size": 8, "max_delay_ms": 2},
            "threshold": 0.4,
        },
    )
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["status"] == "pending" and made["replicas"] == 2
    assert made["checkpoint"] == "best" and made["max_batch_size"] == 8
    assert made["predict_url"] == "/api/v1/models/lesions/predict"
    cr = await platform.objects.get_namespaced_custom_object(
        GROUP, VERSION, platform.namespace, MS_PLURAL, "lesions"
    )
    assert cr["spec"]["source"] == {"session": "sess-abc", "checkpoint": "best"}
    assert cr["spec"]["batching"] == {"maxBatchSize": 8, "maxDelayMs": 2}

    again = await http.post("/api/v1/models", json={"name": "lesions", "session_id": "x"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "CONFLICT"

    listed = (await http.get("/api/v1/models")).json()
    assert [m["name"] for m in listed["models"]] == ["lesions"] and listed["total"] == 1
    patched = await http.patch(
        "/api/v1/models/lesions", json={"replicas": 3, "checkpoint": "latest"}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["replicas"] == 3 and patched.json()["checkpoint"] == "latest"

    uri = await http.post(
        "/api/v1/models",
        json={"name": "from-file", "uri": "s3://pivot/models/m.pth", "sha256": SHA},
    )
    assert uri.status_code == 201, uri.text
    assert uri.json()["uri"] == "s3://pivot/models/m.pth" and uri.json()["session_id"] is None
    refused = await http.patch("/api/v1/models/from-file", json={"checkpoint": "best"})
    assert refused.status_code == 422

    assert (await http.delete("/api/v1/models/lesions")).status_code == 200
    assert (await http.get("/api/v1/models/lesions")).status_code == 404
    assert (await http.delete("/api/v1/models/lesions")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Bad_Name", "session_id": "s"},
        {"name": "m"},
        {"name": "m", "session_id": "s", "uri": "s3://b/k", "sha256": SHA},
        {"name": "m", "uri": "s3://b/k"},
        {"name": "m", "uri": "https://b/k", "sha256": SHA},
        {"name": "m", "session_id": "s", "replicas": -1},
        {"name": "m", "session_id": "s", "batching": {"max_batch_size": 0}},
        {"name": "m", "session_id": "s", "threshold": 2},
        {"name": "m", "session_id": "s", "surprise": 1},
    ],
)
async def test_bad_deploys_are_refused_and_create_nothing(
    platform: Platform, body: dict[str, Any]
) -> None:
    resp = await platform.http.post("/api/v1/models", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "VALIDATION_ERROR"
    assert (await platform.http.get("/api/v1/models")).json()["total"] == 0


async def test_predictions_go_round_robin_to_ready_pods_and_skip_failing_ones(
    platform: Platform, pods: list[Pod]
) -> None:
    http = platform.http
    assert (await http.post("/api/v1/models", json={"name": "m", "session_id": "s"})).is_success
    url = "/api/v1/models/m/predict"

    # No Ready pod: 503 with Retry-After, in the envelope.
    await endpoints(platform, "m", [(pods[0], False)])
    none = await http.post(url, content=b"x", headers={"content-type": "image/png"})
    assert none.status_code == 503 and none.headers["retry-after"] == "1"
    assert none.json()["error"]["code"] == "SERVICE_UNAVAILABLE"

    await endpoints(platform, "m", [(pods[0], True), (pods[1], True)])
    seen = set()
    for _ in range(4):
        resp = await http.post(
            url + "?return_mask=true",
            content=b"\x89PNG-bytes",
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert answer["got"] == 10 and answer["query"] == "return_mask=true"
        assert answer["type"] == "multipart/form-data; boundary=x"
        seen.add(answer["pod"])
    assert seen == {"127.0.0.21", "127.0.0.22"}

    # A draining pod (503) and a dead one (refused) are skipped: no request fails.
    pods[0].status = 503
    for _ in range(4):
        assert (await http.post(url, content=b"x")).json()["pod"] == "127.0.0.22"
    pods[0].stop()
    pods[1].status = 200
    for _ in range(4):
        assert (await http.post(url, content=b"x")).status_code == 200

    # What a pod answers is passed on: its 400 for a bad image too.
    pods[1].status = 400
    bad = await http.post(url, content=b"x")
    assert bad.status_code == 400 and bad.json()["pod"] == "127.0.0.22"


async def test_prediction_bodies_have_their_own_limit(
    platform_factory: Any, pods: list[Pod]
) -> None:
    async with platform_factory(predict_max_bytes=4096, max_body_bytes=1024) as p:
        assert (
            await p.http.post("/api/v1/models", json={"name": "m", "session_id": "s"})
        ).is_success
        await endpoints(p, "m", [(pods[0], True)])
        fits = await p.http.post("/api/v1/models/m/predict", content=b"x" * 3000)
        assert fits.status_code == 200, fits.text  # over the API's 1 KiB, under predict's
        over = await p.http.post("/api/v1/models/m/predict", content=b"x" * 5000)
        assert over.status_code == 413
        assert over.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        missing = await p.http.post("/api/v1/models/nope/predict", content=b"x")
        assert missing.status_code == 404


async def test_a_prediction_waits_a_moment_for_the_endpoints_of_a_ready_server(
    platform: Platform, pods: list[Pod]
) -> None:
    """The server's status says a replica is Ready before its EndpointSlice lists it (the
    slice is written a moment later, on a cluster too): the request waits, it does not fail."""
    http = platform.http
    assert (await http.post("/api/v1/models", json={"name": "m", "session_id": "s"})).is_success
    await server_status(platform, "m", phase="Ready", readyReplicas=1)
    await endpoints(platform, "m", [(pods[0], False)])

    async def later() -> None:
        await asyncio.sleep(0.5)
        await endpoints(platform, "m", [(pods[0], True)])

    task = asyncio.create_task(later())
    resp = await http.post("/api/v1/models/m/predict", content=b"x")
    await task
    assert resp.status_code == 200, resp.text
    assert resp.json()["pod"] == pods[0].ip


async def test_a_prediction_outlasts_a_rollout_whose_new_pod_the_slice_lists_late(
    platform: Platform, pods: list[Pod]
) -> None:
    """A rollout: the new pod is Ready, so the old one drains (503), but the EndpointSlice
    still lists only the old one for a moment. The request waits for the new pod instead of
    failing (e2e: one 503 in 160 requests during a rollout under load)."""
    http = platform.http
    assert (await http.post("/api/v1/models", json={"name": "m", "session_id": "s"})).is_success
    await server_status(platform, "m", phase="Ready", readyReplicas=1)
    old, new = pods
    old.status = 503  # draining
    await endpoints(platform, "m", [(old, True)])

    async def later() -> None:
        await asyncio.sleep(0.5)
        await endpoints(platform, "m", [(old, False), (new, True)])

    task = asyncio.create_task(later())
    answers = await asyncio.gather(
        *(http.post("/api/v1/models/m/predict", content=b"x") for _ in range(8))
    )
    await task
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert {a.json()["pod"] for a in answers} == {new.ip}

    # A server with no Ready replica in its status does not wait: 503 at once.
    await server_status(platform, "m", readyReplicas=0)
    new.status = 503
    resp = await http.post("/api/v1/models/m/predict", content=b"x")
    assert resp.status_code == 503 and resp.json()["error"]["details"]["tried"] == 1
