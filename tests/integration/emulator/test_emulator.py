"""Emulator-specific behaviour: lifecycle, bookmarks, event expiry, the standalone entry point."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from pivot_local.kube import KubeEmulator, run_emulator_in_thread

pytestmark = pytest.mark.integration


def http_json(
    method: str, url: str, body: Any = None, ctype: str = "application/json"
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


CRD = Path(__file__).resolve().parents[3] / "crds" / "trainingsessions.pivot.dev.yaml"


async def test_async_lifecycle_with_an_open_watch(tmp_path: Path) -> None:
    emu = KubeEmulator(crds=[CRD], bookmark_interval=0.1)
    await emu.start()
    assert emu.url.startswith("http://127.0.0.1:") and emu.port != 0
    kc = yaml.safe_load(emu.write_kubeconfig(tmp_path / "kc").read_text())
    assert kc["current-context"] == "pivot-local"
    assert kc["clusters"][0]["cluster"]["server"] == emu.url
    assert kc["contexts"][0]["context"]["namespace"] == "default"
    url = f"{emu.url}/apis/pivot.dev/v1alpha1/namespaces/default/trainingsessions"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        async with http.get(
            url, params={"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true"}
        ) as r:
            line = json.loads(await r.content.readline())
            assert line["type"] == "BOOKMARK"
            assert int(line["object"]["metadata"]["resourceVersion"]) >= int(rv)
            started = time.monotonic()
            await emu.stop()  # must not wait for the open watch to time out
            assert time.monotonic() - started < 5


def test_thread_runner_and_event_expiry() -> None:
    with run_emulator_in_thread(crds=[CRD], event_ttl=3600) as emu:
        for i in range(3):
            status, _ = http_json(
                "POST",
                f"{emu.url}/api/v1/namespaces/default/events",
                {
                    "metadata": {"name": f"e{i}"},
                    "reason": "R",
                    "involvedObject": {"kind": "Pod", "name": "p"},
                },
            )
            assert status == 201
        assert len(emu.store.objects[("", "events")]) == 3
        time.sleep(1.1)  # creationTimestamp has one-second resolution
        assert emu.store.expire_events(ttl=0) == 3
        assert not emu.store.objects[("", "events")]


def test_standalone_module(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kc = tmp_path / "kc"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pivot_local.kube",
            "--port",
            str(port),
            "--crd",
            str(CRD),
            "--kubeconfig",
            str(kc),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert f"127.0.0.1:{port}" in proc.stdout.readline()
        kubectl = Path(sys.executable).with_name("kubectl")
        if kubectl.exists():
            out = subprocess.run(
                [str(kubectl), "--kubeconfig", str(kc), "get", "crd"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert "trainingsessions.pivot.dev" in out.stdout, out.stderr
    finally:
        proc.terminate()
        proc.wait(10)


def test_pod_logs_from_a_log_source(emulator: KubeEmulator, tmp_path: Path) -> None:
    kubectl = Path(sys.executable).with_name("kubectl")
    if not kubectl.exists():
        pytest.skip("kubectl not installed")
    logs = tmp_path / "main.log"
    logs.write_text("line 1\nline 2\n")
    emulator.set_log_source(lambda ns, pod, c: logs if (pod, c) == ("logger", "main") else None)
    base = f"{emulator.url}/api/v1/namespaces/default/pods"

    status, _ = http_json(
        "POST",
        base,
        {"metadata": {"name": "logger"}, "spec": {"containers": [{"name": "main", "image": "x"}]}},
    )
    assert status == 201
    cmd = [str(kubectl), "--kubeconfig", str(emulator.kubeconfig), "logs", "logger"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert out.stdout == "line 1\nline 2\n", out.stderr
        tail = subprocess.run([*cmd, "--tail=1"], capture_output=True, text=True, timeout=30)
        assert tail.stdout == "line 2\n"
        follow = subprocess.Popen([*cmd, "-f"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        with logs.open("a") as f:
            f.write("line 3\n")
        time.sleep(0.5)

        http_json(
            "PATCH",
            f"{base}/logger/status",
            {"status": {"phase": "Succeeded"}},
            "application/merge-patch+json",
        )
        rest, _ = follow.communicate(timeout=10)
        assert rest == "line 1\nline 2\nline 3\n"
    finally:
        emulator.set_log_source(None)

        http_json("DELETE", f"{base}/logger")
