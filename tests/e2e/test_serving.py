"""Train -> deploy the best checkpoint -> predict, through the API on the whole local platform:
the operator's ModelServer pods (each on its own loopback address), their readiness probes,
the EndpointSlices the API forwards by, rolling updates and scaling under load."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest

from pivot_local.platform import LocalPlatform
from pivot_local.services import DEFAULT_BUCKET
from pivot_schema import storage
from pivot_trainer.data import VAL, make_split
from pivot_trainer.froc import froc_curve, label_components
from tests.integration.serve.serving import npy_bytes
from tests.support.platform import DemoRun
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FRESH_SEED = 4242  # neither the training's (5) nor any probe's
FRESH = 192  # ~380 lesions
MIN_SENSITIVITY = 0.9  # at 1 false positive per image


def model(api: httpx.Client, name: str) -> dict[str, Any]:
    resp = api.get(f"/models/{name}")
    resp.raise_for_status()
    return dict(resp.json())


def wait_ready(
    api: httpx.Client, name: str, *, replicas: int, timeout: float = 180
) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        body = model(api, name)
        if body["status"] == "failed":
            raise AssertionError(f"model {name} failed: {body}")
        done = body["status"] == "ready" and body["ready_replicas"] == replicas
        return body if done else None

    return wait_for(ready, timeout, f"model {name} ready with {replicas} replica(s)")


def predict(api: httpx.Client, name: str, images: np.ndarray) -> httpx.Response:
    files = [
        ("file", (f"i{i}.npy", npy_bytes(image), "application/octet-stream"))
        for i, image in enumerate(images)
    ]
    return api.post(f"/models/{name}/predict", files=files, timeout=60)


@dataclass
class Load:
    """A client sending `rate` predictions a second until stopped: every answer counted."""

    api_url: str
    headers: dict[str, str]
    name: str
    image: np.ndarray
    rate: float = 20.0
    outcomes: Counter[str] = field(default_factory=Counter)
    checkpoints: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        body = npy_bytes(self.image)
        with httpx.Client(base_url=self.api_url, headers=self.headers, timeout=30) as http:
            next_at = time.monotonic()
            while not self._stop.is_set():
                try:
                    resp = http.post(
                        f"/models/{self.name}/predict",
                        files=[("file", ("x.npy", body, "application/octet-stream"))],
                    )
                except httpx.HTTPError as exc:
                    self.outcomes["error"] += 1
                    self.failures.append(repr(exc))
                else:
                    self.outcomes[str(resp.status_code)] += 1
                    if resp.status_code == 200:
                        self.checkpoints.append(resp.json()["checkpoint_id"])
                    else:
                        self.failures.append(f"{resp.status_code} {resp.text[:200]}")
                next_at += 1 / self.rate
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture(scope="module")
def trained(demo_run: DemoRun) -> dict[str, Any]:
    """The demo config (configs/train.yaml) trained to completion by the platform's trainer:
    the e2e suite's one demo run (conftest.demo_run)."""
    return demo_run.final


def size_of(trained: dict[str, Any]) -> int:
    return int(trained["config"]["image_size"])


@pytest.fixture(scope="module")
def api(platform: LocalPlatform) -> Any:
    with httpx.Client(
        base_url=f"{platform.api_url}/api/v1", timeout=60, headers=platform.api_headers()
    ) as client:
        yield client
        # The platform outlives this module: its servers go with it.
        for served in client.get("/models").json()["models"]:
            client.delete(f"/models/{served['name']}")


def test_the_best_checkpoint_served_finds_the_lesions(
    api: httpx.Client, trained: dict[str, Any]
) -> None:
    sid, best = trained["session_id"], trained["best_checkpoint"]
    made = api.post("/models", json={"name": "lesions", "session_id": sid})
    assert made.status_code == 201, made.text
    served = wait_ready(api, "lesions", replicas=1)
    assert served["checkpoint_id"] == best["checkpoint_id"]

    images_t, masks_t = make_split(FRESH, size_of(trained), FRESH_SEED, VAL)
    images, masks = images_t[:, 0].numpy(), masks_t[:, 0]
    candidates: list[list[dict[str, Any]]] = []
    for start in range(0, FRESH, 16):
        resp = predict(api, "lesions", images[start : start + 16])
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert answer["model"] == "lesions" and answer["checkpoint_id"] == best["checkpoint_id"]
        candidates += [p["candidates"] for p in answer["predictions"]]
    # A candidate whose centre lies in a lesion finds it; one in none is a false positive.
    lesions = label_components(masks).numpy()
    found = {int(i): -1.0 for i in np.unique(lesions[lesions > 0])}
    false_pos = []
    for labels, cands in zip(lesions, candidates, strict=True):
        for c in cands:
            hit = int(labels[round(c["y"]), round(c["x"])])
            if hit:
                found[hit] = max(found[hit], c["probability"])
            else:
                false_pos.append(c["probability"])
    curve = dict(froc_curve(np.array(list(found.values())), np.array(false_pos), FRESH))
    assert curve[1.0] >= MIN_SENSITIVITY, curve


def test_a_new_checkpoint_rolls_in_and_scaling_fails_no_request(
    api: httpx.Client, platform: LocalPlatform, trained: dict[str, Any]
) -> None:
    sid = trained["session_id"]
    ids = sorted(
        c["checkpoint_id"]
        for c in api.get("/checkpoints", params={"session_id": sid}).json()["checkpoints"]
    )
    assert len(ids) >= 2, ids
    first, second = ids[0], ids[-1]
    made = api.post("/models", json={"name": "rolling", "session_id": sid, "checkpoint": first})
    assert made.status_code == 201, made.text
    assert wait_ready(api, "rolling", replicas=1)["checkpoint_id"] == first

    image = make_split(1, size_of(trained), FRESH_SEED + 1, VAL)[0][0, 0].numpy()
    load = Load(platform.api_url + "/api/v1", dict(api.headers), "rolling", image)
    try:
        wait_for(lambda: load.outcomes["200"] >= 20, 60, "answers from the first checkpoint")
        rolled = api.patch("/models/rolling", json={"checkpoint": second})
        assert rolled.status_code == 200, rolled.text
        wait_for(lambda: load.checkpoints and load.checkpoints[-1] == second, 180, "the switch")
        wait_ready(api, "rolling", replicas=1)
        # Then 1 -> 3 -> 1 replicas, under the same load.
        assert api.patch("/models/rolling", json={"replicas": 3}).status_code == 200
        wait_ready(api, "rolling", replicas=3)
        assert api.patch("/models/rolling", json={"replicas": 1}).status_code == 200
        wait_ready(api, "rolling", replicas=1)
        wait_for(lambda: len(pods_of(platform, "rolling")) == 1, 60, "the extra pods gone")
        before = load.outcomes["200"]
        wait_for(lambda: load.outcomes["200"] >= before + 20, 60, "answers after scaling")
    finally:
        load.stop()
    assert set(load.outcomes) == {"200"}, (load.outcomes, load.failures[:5])
    switch = load.checkpoints.index(second)
    assert set(load.checkpoints[:switch]) == {first}
    assert load.outcomes["200"] >= 100


def test_a_model_server_applied_like_kubectl_apply_serves_the_same(
    api: httpx.Client, platform: LocalPlatform, trained: dict[str, Any]
) -> None:
    # The file itself, by its S3 URI and digest (the API's create takes a session instead).
    sid, best = trained["session_id"], trained["best_checkpoint"]["checkpoint_id"]
    listed = api.get("/checkpoints", params={"session_id": sid}).json()["checkpoints"]
    sha256 = next(c["sha256"] for c in listed if c["checkpoint_id"] == best)
    manifest = {
        "apiVersion": "pivot.dev/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": "applied"},
        "spec": {
            "source": {
                "uri": f"s3://{DEFAULT_BUCKET}/{storage.model_key(sid, best)}",
                "sha256": sha256,
                "checkpoint": best,
            },
            "batching": {"maxBatchSize": 4, "maxDelayMs": 1},
        },
    }
    with httpx.Client(base_url=platform.kube.url, timeout=10) as kube:
        path = f"/apis/pivot.dev/v1alpha1/namespaces/{platform.namespace}/modelservers"
        assert kube.post(path, json=manifest).status_code == 201
    served = wait_ready(api, "applied", replicas=1)
    assert (served["checkpoint_id"], served["sha256"]) == (best, sha256)
    image = make_split(2, size_of(trained), FRESH_SEED + 2, VAL)[0][:, 0].numpy()
    resp = predict(api, "applied", image)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["predictions"]) == 2
    assert api.delete("/models/applied").status_code == 200


def pods_of(platform: LocalPlatform, name: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=platform.kube.url, timeout=10) as kube:
        items = kube.get(
            f"/api/v1/namespaces/{platform.namespace}/pods",
            params={"labelSelector": f"pivot.dev/modelserver={name}"},
        ).json()["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]
