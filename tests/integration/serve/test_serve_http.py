"""`python -m pivot_trainer.serve` over real HTTP, serving a checkpoint the trainer wrote to a
real S3: readiness, predictions, input formats, refusals, metrics."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from pivot_trainer.froc import detections
from pivot_trainer.serve.model import Loaded, find_candidates
from tests.integration.serve.conftest import MAX_BYTES, Served, local_probs
from tests.integration.serve.serving import Trained, json_body, npy_bytes, png_bytes

pytestmark = pytest.mark.integration


def files(*blobs: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"image{i}", b, "application/octet-stream")) for i, b in enumerate(blobs)]


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return dict(error["details"])


def mask_of(prediction: dict[str, Any]) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(prediction["mask_png"]))) as img:
        assert img.mode == "L"
        return np.asarray(img)


def test_ready_only_once_the_checkpoint_is_loaded(served: Served, trained: Trained) -> None:
    before = served.before_ready
    assert before["ready"].status_code == 503
    assert before["ready"].json()["status"] == "loading"
    assert before["ready"].headers["Retry-After"]
    assert before["healthz"].status_code == 200  # alive while loading
    assert error_of(before["predict"], 503, "SERVICE_UNAVAILABLE") == {"state": "loading"}
    assert before["predict"].headers["Retry-After"]

    ready = httpx.get(f"{served.url}/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "model": "lesions",
        "checkpoint_id": trained.manifest.checkpoint_id,
        "sha256": trained.manifest.sha256,
    }
    assert "verified" in served.proc.log and "warm-up" in served.proc.log


def test_candidates_are_what_froc_finds_on_the_same_probability_map(
    served: Served,
    trained: Trained,
    local_model: Loaded,
    probe: tuple[np.ndarray, np.ndarray],
) -> None:
    images, _ = probe
    blobs = [(npy_bytes(image), "npy") for image in images]
    response = served.predict(json=json_body(blobs, return_mask=True))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "lesions"
    assert body["checkpoint_id"] == trained.manifest.checkpoint_id
    assert body["sha256"] == trained.manifest.sha256
    timing = body["timing"]
    assert set(timing) == {"queue_ms", "inference_ms", "total_ms", "batch_size"}
    assert timing["batch_size"] == len(images)  # one request's images run as one batch
    assert 0 <= timing["queue_ms"] <= timing["total_ms"]
    assert 0 < timing["inference_ms"] <= timing["total_ms"]

    probs = local_probs(local_model, images)
    want = find_candidates(probs, served.threshold)
    lesion_scores, fps = detections(probs, (probs >= served.threshold).float(), served.threshold)
    assert len(fps) == 0
    served_scores = []
    assert len(body["predictions"]) == len(images)
    for prediction, expected, p in zip(body["predictions"], want, probs, strict=True):
        assert prediction["shape"] == [images.shape[1], images.shape[2]]
        got = prediction["candidates"]
        assert [c["area"] for c in got] == [c["area"] for c in expected]
        for a, b in zip(got, expected, strict=True):
            assert a["x"] == pytest.approx(b["x"]) and a["y"] == pytest.approx(b["y"])
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-4)
        served_scores += [c["probability"] for c in got]
        # The mask is the probability map in 8 bits.
        want_mask = (p * 255).round().to(torch.uint8).numpy()
        assert np.abs(mask_of(prediction).astype(int) - want_mask).max() <= 1
    assert len(served_scores) > len(images)  # a trained model: candidates to compare
    assert sorted(served_scores) == pytest.approx(sorted(lesion_scores.tolist()), abs=1e-4)


def test_png_8_and_16_bit_and_npy_inputs_agree(served: Served) -> None:
    # Images reach the model as their stored values, as the trainer's inputs do: the same
    # integers as an 8-bit PNG, a 16-bit PNG, an integer npy and a float npy are one image.
    rng = np.random.default_rng(7)
    u8 = rng.integers(0, 3, (32, 32), dtype=np.uint8)
    u8[8:14, 10:16] = 2
    blobs = (
        png_bytes(u8),
        png_bytes(u8.astype(np.uint16)),
        npy_bytes(u8),
        npy_bytes(u8.astype(np.float32)),
    )
    response = served.predict(files=files(*blobs), params={"return_mask": "true"})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    first = predictions[0]
    for other in predictions[1:]:
        assert other["candidates"] == first["candidates"]
        np.testing.assert_array_equal(mask_of(other), mask_of(first))
    assert len(np.unique(mask_of(first))) > 1  # the map is an image, not a constant
    # Without return_mask, no mask. (Alone, not in a batch of 4: the same up to float noise.)
    plain = served.predict(files=files(blobs[0])).json()["predictions"][0]
    assert "mask_png" not in plain
    as_field = served.predict(files=files(blobs[0]), data={"return_mask": "true"})
    assert "mask_png" in as_field.json()["predictions"][0]  # a form field asks as well
    bad_flag = served.predict(files=files(blobs[0]), params={"return_mask": "maybe"})
    assert error_of(bad_flag, 400, "BAD_REQUEST") == {"field": "return_mask"}
    assert [c["area"] for c in plain["candidates"]] == [c["area"] for c in first["candidates"]]
    for a, b in zip(plain["candidates"], first["candidates"], strict=True):
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)


def test_bad_images_are_refused_with_the_envelope_and_the_server_goes_on(
    served: Served, probe: tuple[np.ndarray, np.ndarray]
) -> None:
    good = npy_bytes(probe[0][0])
    before = served.proc.metrics()['pivot_serve_requests_total{outcome="invalid"}']

    details = error_of(served.predict(files=files(good, b"hello")), 400, "INVALID_IMAGE")
    assert details["index"] == 1 and details["reason"] == "unknown_format"
    odd = npy_bytes(np.zeros((30, 32), np.float32))
    details = error_of(served.predict(files=files(odd)), 400, "INVALID_IMAGE")
    assert details == {"index": 0, "reason": "shape", "shape": [30, 32], "multiple_of": 4}
    rgb = io.BytesIO()
    Image.new("RGB", (32, 32)).save(rgb, format="PNG")
    details = error_of(served.predict(files=files(rgb.getvalue())), 400, "INVALID_IMAGE")
    assert details["reason"] == "unsupported_png"
    cube = npy_bytes(np.zeros((2, 32, 32), np.float32))
    assert error_of(served.predict(files=files(cube)), 400, "INVALID_IMAGE")["reason"] == "not_2d"
    bad_b64 = {"images": [{"data": "not base64!", "format": "npy"}]}
    assert error_of(served.predict(json=bad_b64), 400, "INVALID_IMAGE")["reason"] == "base64"
    wrong_format = json_body([(good, "png")])
    details = error_of(served.predict(json=wrong_format), 400, "INVALID_IMAGE")
    assert details["reason"] == "format_mismatch"
    no_json = served.predict(content=b"{", headers={"Content-Type": "application/json"})
    error_of(no_json, 400, "BAD_REQUEST")
    error_of(served.predict(json={"images": []}), 400, "BAD_REQUEST")
    error_of(served.predict(files=[("other", ("x", good, "x/y"))]), 400, "BAD_REQUEST")
    text = served.predict(content=b"hi", headers={"Content-Type": "text/plain"})
    error_of(text, 415, "UNSUPPORTED_MEDIA_TYPE")
    error_of(httpx.get(f"{served.url}/predict"), 405, "METHOD_NOT_ALLOWED")
    error_of(httpx.get(f"{served.url}/nothing"), 404, "NOT_FOUND")

    after = served.proc.metrics()['pivot_serve_requests_total{outcome="invalid"}']
    assert after - before == 9
    assert served.predict(files=files(good)).status_code == 200
    assert served.proc.proc.poll() is None


def test_a_body_over_the_limit_is_413_declared_or_streamed(
    served: Served, probe: tuple[np.ndarray, np.ndarray]
) -> None:
    big = npy_bytes(np.zeros((256, 256), np.float32))  # 256 KiB + header > MAX_BYTES
    assert len(big) > MAX_BYTES
    details = error_of(served.predict(files=files(big)), 413, "PAYLOAD_TOO_LARGE")
    assert details["max_bytes"] == MAX_BYTES

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 32 * 1024):
            yield big[start : start + 32 * 1024]

    streamed = served.predict(content=chunks(), headers={"Content-Type": "image/png"})
    assert error_of(streamed, 413, "PAYLOAD_TOO_LARGE")["max_bytes"] == MAX_BYTES
    # A raw body under the limit is one image.
    raw = served.predict(
        content=npy_bytes(probe[0][0]), headers={"Content-Type": "application/x-npy"}
    )
    assert raw.status_code == 200 and len(raw.json()["predictions"]) == 1


def test_metrics_count_requests_batches_and_the_queue(
    served: Served, probe: tuple[np.ndarray, np.ndarray]
) -> None:
    assert served.predict(files=files(npy_bytes(probe[0][0]))).status_code == 200
    sample = served.proc.metrics()
    assert sample['pivot_serve_requests_total{outcome="ok"}'] >= 1
    assert sample["pivot_serve_request_duration_seconds_count"] >= 1
    assert sample["pivot_serve_batch_size_count"] >= 1
    assert sample["pivot_serve_images_total"] >= sample["pivot_serve_batch_size_count"]
    assert sample["pivot_serve_queue_depth"] == 0
    assert sample["pivot_serve_ready"] == 1
    assert any(k.startswith("pivot_serve_model_info{") for k in sample)
