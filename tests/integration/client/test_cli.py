"""The `pivot` command, run as a user runs it (a subprocess), against the local platform."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pivot_client import PIVOTClient
from pivot_client.cli import (
    EXIT_API_ERROR,
    EXIT_AUTH,
    EXIT_BROKEN_PIPE,
    EXIT_CONFLICT,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_RATE_LIMITED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from pivot_local.platform import LocalPlatform
from pivot_schema.crd import GROUP, PLURAL, VERSION
from tests.support.platform import TINY_CONFIG

from .servers import Reply, ScriptedAPI, error

pytestmark = pytest.mark.integration

PIVOT = str(Path(sys.executable).parent / "pivot")


def pivot(*args: str, url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    # PIVOT_API_KEY is the platform fixture's key (conftest.py) while it runs.
    full_env = {**os.environ, **env}
    if url is not None:
        full_env["PIVOT_URL"] = url
    return subprocess.run([PIVOT, *args], capture_output=True, text=True, env=full_env, timeout=240)


def as_json(run: subprocess.CompletedProcess[str]) -> Any:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_apply_manifest_then_watch_list_metrics_and_checkpoints(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    manifest = {
        "apiVersion": "pivot.dev/v1alpha1",
        "kind": "TrainingSession",
        "metadata": {"name": "cli-demo"},
        "spec": {"config": TINY_CONFIG, "tags": ["cli"]},
    }
    path = tmp_path / "session.yaml"
    path.write_text(yaml.safe_dump(manifest))
    applied = as_json(pivot("apply", "-f", str(path), "-o", "json", url=platform.api_url))
    session_id = applied["session_id"]
    assert applied["status"] == "running"  # a manifest without suspend runs at once

    watch = pivot("sessions", "watch", session_id, url=platform.api_url)
    assert watch.returncode == 0, watch.stderr
    lines = watch.stdout.splitlines()
    # Not a terminal: one plain line per epoch, no carriage returns or colour codes.
    assert [line.split(" [")[0] for line in lines if line.startswith("epoch ")] == [
        "epoch 1/3",
        "epoch 2/3",
        "epoch 3/3",
    ]
    assert "ETA" in lines[0] or "ETA" in lines[1]
    assert lines[-1].startswith("completed")
    assert "\r" not in watch.stdout and "\x1b[" not in watch.stdout

    listed = as_json(pivot("sessions", "list", "-o", "json", url=platform.api_url))
    assert session_id in [s["session_id"] for s in listed]
    table = pivot("sessions", "list", url=platform.api_url)
    assert table.returncode == 0 and table.stdout.startswith("SESSION_ID")

    got = as_json(pivot("sessions", "get", session_id, "-o", "json", url=platform.api_url))
    assert got["status"] == "completed" and got["session_name"] == "cli-demo"
    as_yaml = yaml.safe_load(
        pivot("sessions", "get", session_id, "-o", "yaml", url=platform.api_url).stdout
    )
    assert as_yaml["session_id"] == session_id

    metrics = as_json(pivot("metrics", session_id, "-o", "json", url=platform.api_url))
    assert [m["epoch"] for m in metrics["metrics"]] == [1, 2, 3]
    metrics_table = pivot("metrics", session_id, url=platform.api_url).stdout.splitlines()
    assert metrics_table[0].split()[0] == "EPOCH" and len(metrics_table) == 4

    ckpts = as_json(
        pivot("checkpoints", "list", "--session", session_id, "-o", "json", url=platform.api_url)
    )["checkpoints"]
    assert ckpts, "the trainer saved no checkpoint"
    out = tmp_path / "dl"
    out.mkdir()
    downloaded = pivot(
        "checkpoints", "download", ckpts[0]["checkpoint_id"], str(out), url=platform.api_url
    )
    assert downloaded.returncode == 0, downloaded.stderr
    assert Path(downloaded.stdout.strip()).stat().st_size > 0


# The watch-then-read race this guards against struck once in ~700 runs; the suite repeats
# it a few times, PIVOT_TEST_REPEATS=30 (or more) hunts for it on purpose.
REPEATS = int(os.environ.get("PIVOT_TEST_REPEATS", "3"))


@pytest.mark.parametrize("run", range(REPEATS))
def test_watch_ends_on_what_every_read_then_says_with_the_last_epochs_metrics(
    platform: LocalPlatform, tmp_path: Path, run: int
) -> None:
    manifest = {
        "apiVersion": "pivot.dev/v1alpha1",
        "kind": "TrainingSession",
        "metadata": {"name": f"cli-truth-{run}-{os.getpid()}"},
        "spec": {"config": {**TINY_CONFIG, "epochs": 2}},
    }
    path = tmp_path / "session.yaml"
    path.write_text(yaml.safe_dump(manifest))
    session_id = as_json(pivot("apply", "-f", str(path), "-o", "json", url=platform.api_url))[
        "session_id"
    ]
    watch = pivot("sessions", "watch", session_id, url=platform.api_url)
    assert watch.returncode == 0, watch.stderr
    got = as_json(pivot("sessions", "get", session_id, "-o", "json", url=platform.api_url))
    last = as_json(pivot("metrics", session_id, "-o", "json", url=platform.api_url))["metrics"][-1]
    assert (got["status"], got["current_epoch"], last["epoch"]) == ("completed", 2, 2)
    # The last line is the outcome with the last epoch's metrics, as the read says.
    final = watch.stdout.splitlines()[-1].split()
    assert final[0] == "completed", watch.stdout
    shown = dict(item.split("=", 1) for item in final[1:])
    assert shown and shown == {k: f"{v:.4g}" for k, v in got["latest_metrics"].items()}, (
        watch.stdout
    )
    assert {k: f"{v:.4g}" for k, v in last.items() if k not in ("epoch", "timestamp")} == shown


def test_create_start_stop_and_their_exit_codes(platform: LocalPlatform, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**TINY_CONFIG, "epochs": 500}))
    created = as_json(
        pivot(
            "sessions",
            "create",
            "-f",
            str(config),
            "--name",
            "cli",
            "-o",
            "json",
            url=platform.api_url,
        )
    )
    session_id = created["session_id"]
    assert created["status"] == "created"
    assert pivot("sessions", "start", session_id, url=platform.api_url).returncode == 0
    again = pivot("sessions", "start", session_id, url=platform.api_url)
    assert again.returncode == EXIT_CONFLICT and "409" in again.stderr
    with PIVOTClient(platform.api_url) as client, client.stream_metrics(session_id) as stream:
        next(stream)  # it trains before it is stopped
    stopped = as_json(pivot("sessions", "stop", session_id, "-o", "json", url=platform.api_url))
    assert stopped["status"] == "stopped"
    watch = pivot("sessions", "watch", session_id, url=platform.api_url)
    assert watch.returncode == 9 and "stopped" in watch.stdout


def test_checkpoint_upload_and_delete(platform: LocalPlatform, tmp_path: Path) -> None:
    with PIVOTClient(platform.api_url) as client:
        session_id = client.create_session(config=TINY_CONFIG).session_id
    file = tmp_path / "w.pth"
    file.write_bytes(b"\0" * 4096)
    up = as_json(
        pivot(
            "checkpoints",
            "upload",
            str(file),
            "--session",
            session_id,
            "--epoch",
            "1",
            "--metrics",
            '{"val_loss": 0.5}',
            "-o",
            "json",
            url=platform.api_url,
        )
    )
    ckpt = up["checkpoint_id"]
    assert pivot("checkpoints", "delete", ckpt, url=platform.api_url).returncode == 0
    gone = pivot("checkpoints", "delete", ckpt, url=platform.api_url)
    assert gone.returncode == EXIT_NOT_FOUND


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("sessions", "get", "sess-nosuch"), EXIT_NOT_FOUND),
        (("metrics", "sess-nosuch", "-o", "json"), EXIT_NOT_FOUND),
        (("sessions", "create", "--config-path", "configs/nope.yaml"), EXIT_NOT_FOUND),
        (("sessions", "create", "--config-path", "../etc/passwd"), EXIT_INVALID),
        (("sessions", "frobnicate"), EXIT_USAGE),
        (("sessions", "list", "-o", "xml"), EXIT_USAGE),
    ],
)
def test_exit_codes(platform: LocalPlatform, args: tuple[str, ...], code: int) -> None:
    run = pivot(*args, url=platform.api_url)
    assert run.returncode == code, run.stderr
    assert run.stderr and not run.stdout


def test_apply_refuses_what_the_api_cannot_express(platform: LocalPlatform, tmp_path: Path) -> None:
    path = tmp_path / "affinity.yaml"
    spec = {"config": TINY_CONFIG, "affinity": {"nodeAffinity": {}}}
    path.write_text(yaml.safe_dump({"kind": "TrainingSession", "spec": spec}))
    run = pivot("apply", "-f", str(path), url=platform.api_url)
    assert run.returncode == EXIT_USAGE and "affinity" in run.stderr


def cr_spec(platform: LocalPlatform, session_id: str) -> dict[str, Any]:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{platform.namespace}/{PLURAL}/{session_id}"
    with platform.http() as kube:
        resp = kube.get(path)
    resp.raise_for_status()
    return dict(resp.json()["spec"])


def readme_manifest() -> str:
    """The TrainingSession manifest the README shows (the YAML block after "apply a manifest")."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    after = readme.split("kind: TrainingSession", 1)
    start = after[0].rindex("```yaml\n") + len("```yaml\n")
    return after[0][start:] + "kind: TrainingSession" + after[1].split("```", 1)[0]


def test_the_readmes_manifest_applies_with_its_gpu(platform: LocalPlatform, tmp_path: Path) -> None:
    text = readme_manifest()
    doc = yaml.safe_load(text)
    assert doc["kind"] == "TrainingSession" and doc["spec"]["resources"]["gpu"] == 1
    path = tmp_path / "readme.yaml"
    path.write_text(text)
    applied = as_json(pivot("apply", "-f", str(path), "-o", "json", url=platform.api_url))
    session_id = applied["session_id"]
    try:
        spec = cr_spec(platform, session_id)
        assert spec["resources"] == doc["spec"]["resources"]
        assert spec["sessionName"] == doc["spec"]["sessionName"]
        assert spec["config"] == doc["spec"]["config"]
        assert applied["status"] == "running"  # no `suspend`: it runs at once, like kubectl's
    finally:  # a GPU pod this machine may not have: stop it
        pivot("sessions", "stop", session_id, url=platform.api_url)


def test_apply_takes_placement_from_a_manifest_and_from_a_body(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    spec = {
        "config": TINY_CONFIG,
        "suspend": True,
        "resources": {"cpu": "500m", "memory": "1Gi"},
        "nodeSelector": {"pool": "cpu"},
        "tolerations": [
            {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}
        ],
        "replicas": 2,
    }
    body = {
        "config_path": "configs/train.yaml",
        "resources": {"gpu": 1},
        "node_selector": {"pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        "replicas": 3,
    }
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump_all([{"kind": "TrainingSession", "spec": spec}, body]))
    first, second = as_json(pivot("apply", "-f", str(path), "-o", "json", url=platform.api_url))
    assert first["status"] == second["status"] == "created"
    made = cr_spec(platform, first["session_id"])
    assert {k: made[k] for k in ("resources", "nodeSelector", "tolerations", "replicas")} == {
        k: spec[k] for k in ("resources", "nodeSelector", "tolerations", "replicas")
    }
    made = cr_spec(platform, second["session_id"])
    assert made["resources"] == {"gpu": 1} and made["nodeSelector"] == {"pool": "gpu"}
    assert made["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert made["replicas"] == 3


def test_sessions_create_with_gpu_cpu_memory_replicas_and_placement_flags(
    platform: LocalPlatform,
) -> None:
    created = as_json(
        pivot(
            *("sessions", "create", "--config-path", "configs/train.yaml"),
            *("--gpu", "2", "--cpu", "8", "--memory", "32Gi", "--replicas", "2"),
            *("--node-selector", "nvidia.com/gpu.product=NVIDIA-H200"),
            *("--toleration", "nvidia.com/gpu:NoSchedule"),
            *("--toleration", "dedicated=ml"),
            *("-o", "json"),
            url=platform.api_url,
        )
    )
    spec = cr_spec(platform, created["session_id"])
    assert spec["resources"] == {"gpu": 2, "cpu": "8", "memory": "32Gi"}
    assert spec["replicas"] == 2
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml"},
    ]
    bad = pivot(
        *("sessions", "create", "--config-path", "configs/train.yaml", "--memory", "lots"),
        url=platform.api_url,
    )
    assert bad.returncode == EXIT_INVALID and "resources.memory" in bad.stderr
    bad = pivot(
        *("sessions", "create", "--config-path", "configs/train.yaml", "--toleration", "k:Never"),
        url=platform.api_url,
    )
    assert bad.returncode == EXIT_USAGE and "effect" in bad.stderr


def test_apply_accepts_a_create_body(platform: LocalPlatform, tmp_path: Path) -> None:
    path = tmp_path / "body.yaml"
    path.write_text(yaml.safe_dump({"config_path": "configs/train.yaml", "session_name": "b"}))
    created = as_json(pivot("apply", "-f", str(path), "-o", "json", url=platform.api_url))
    assert created["status"] == "created"


def test_url_flag_and_unreachable_api() -> None:
    run = pivot("sessions", "list", "--url", "http://127.0.0.1:9", "--retries", "0")
    assert run.returncode == EXIT_UNREACHABLE and "connection" in run.stderr


def test_auth_and_rate_limit_exit_codes() -> None:
    with ScriptedAPI([error(401, "UNAUTHORIZED", "bad key")]) as api:
        run = pivot("sessions", "list", "--api-key", "k", url=api.url)
    assert run.returncode == EXIT_AUTH and "bad key" in run.stderr
    assert api.seen[0].headers["Authorization"] == "Bearer k"
    with ScriptedAPI([error(429, "RATE_LIMITED", "slow down", **{"Retry-After": "0"})]) as api:
        run = pivot("sessions", "list", url=api.url)
    assert run.returncode == EXIT_RATE_LIMITED
    assert len(api.seen) == 3  # the first try and two retries


def test_pivot_up_is_still_there() -> None:
    run = pivot("up", "--help")
    assert run.returncode == 0 and "--demo" in run.stdout


def session_page(names: list[str]) -> Reply:
    sessions = [
        {
            "session_id": f"sess-{i:05d}",
            "session_name": name,
            "status": "running",
            "current_epoch": 1,
            "total_epochs": 3,
            "created_at": "2025-12-19T10:30:00Z",
        }
        for i, name in enumerate(names)
    ]
    return Reply(200, {"sessions": sessions, "total": len(sessions), "limit": 50, "offset": 0})


def test_output_into_a_pipe_that_closes_early_ends_quietly() -> None:
    # Far more than a pipe holds (64 KiB): pivot is still writing when the reader leaves.
    with ScriptedAPI([session_page([f"run-{i}" for i in range(4000)])]) as api:
        proc = subprocess.Popen(
            [PIVOT, "sessions", "list", "--url", api.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith("SESSION_ID")  # `| head -n 1`
        proc.stdout.close()
        stderr = proc.stderr.read()
        assert proc.wait(timeout=60) == EXIT_BROKEN_PIPE
    assert stderr == ""  # no BrokenPipeError traceback, no "Exception ignored" either


def test_an_unreachable_api_is_named_in_the_error() -> None:
    run = pivot("sessions", "list", "--url", "http://127.0.0.1:9", "--retries", "0")
    assert run.returncode == EXIT_UNREACHABLE
    assert "http://127.0.0.1:9/api/v1/training/sessions" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--url", "{url}", "-o", "json", "sessions", "list"),
        ("sessions", "list", "--url", "{url}", "-o", "json"),
        ("-o", "yaml", "sessions", "list", "--url", "{url}", "-o", "json"),  # after wins
        ("--url", "http://127.0.0.1:9", "sessions", "list", "--url", "{url}", "-o", "json"),
    ],
)
def test_global_options_work_before_and_after_the_command(args: tuple[str, ...]) -> None:
    with ScriptedAPI([session_page(["a"])]) as api:
        run = pivot(*(a.format(url=api.url) for a in args), url="http://127.0.0.1:9")
    assert [s["session_id"] for s in as_json(run)] == ["sess-00000"]


def test_tables_escape_control_characters_from_the_server() -> None:
    names = ["nul\x00bel\x07", "two\nlines", "evil\u202eexe.txt", "esc\x1b[31mred", "ok é"]
    with ScriptedAPI([session_page(names)]) as api:
        run = pivot("sessions", "list", "--url", api.url)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1 + len(names)  # a newline in a name does not make a row
    shown = [line.split()[1] for line in lines[1:]]
    assert shown == ["nul\\x00bel\\a", "two\\nlines", "evil\\u202eexe.txt", "esc\\x1b[31mred", "ok"]
    assert not any(c in run.stdout for c in "\x00\x07\x1b\u202e")
    assert "ok é" in run.stdout  # printable text is left as it is


def test_logs_events_configs_and_whoami(platform: LocalPlatform) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return pivot(*args, url=platform.api_url)

    created = cli("sessions", "create", "--config-path", "configs/train.yaml", "--start", "-ojson")
    sid = as_json(created)["session_id"]
    # Followed, the log ends with the session: every line the trainer wrote, then exit 0.
    followed = cli("sessions", "logs", sid, "-f")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.strip(), "the trainer logs as it trains"
    whole = cli("sessions", "logs", sid)
    assert whole.stdout == followed.stdout
    tail = cli("sessions", "logs", sid, "--tail", "1", "--rank", "all")
    assert tail.stdout == f"[rank 0] {followed.stdout.splitlines()[-1]}\n"

    events = as_json(cli("sessions", "events", sid, "-o", "json"))
    assert events["session_id"] == sid and events["events"]
    table = cli("sessions", "events", sid)
    assert table.returncode == 0 and "REASON" in table.stdout.upper()

    configs = as_json(cli("configs", "-o", "json"))["configs"]
    assert [c["config_path"] for c in configs] == ["configs/train.yaml"]
    assert configs[0]["config"]["epochs"] == TINY_CONFIG["epochs"]
    me = as_json(cli("whoami", "-o", "json"))
    assert me == {"auth_enabled": True, "name": me["name"], "scope": "admin"}
    assert cli("sessions", "logs", "sess-nope").returncode == EXIT_NOT_FOUND


def test_models_deploy_list_update_delete_and_predict_exit_codes(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """`pivot models ...` and `pivot predict` as a user runs them. No replicas: no pod starts
    for the file, which does not exist; a prediction then has no Ready replica (503)."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return pivot(*args, url=platform.api_url)

    source = ("--uri", "s3://pivot-cli/model.pth", "--sha256", "ef" * 32)
    no_sha = cli("models", "deploy", "cli-model", "--uri", "s3://pivot-cli/model.pth")
    assert no_sha.returncode == EXIT_USAGE and "--sha256" in no_sha.stderr
    made = as_json(
        cli(
            "models", "deploy", "cli-model", *source, "--replicas", "0",
            "--max-batch-size", "4", "--max-delay-ms", "1.5", "--threshold", "0.7", "-ojson",
        )
    )  # fmt: skip
    assert (made["name"], made["replicas"], made["max_batch_size"]) == ("cli-model", 0, 4)
    assert (made["max_delay_ms"], made["threshold"]) == (1.5, 0.7)
    assert cli("models", "deploy", "cli-model", *source).returncode == EXIT_CONFLICT

    table = cli("models", "list")
    assert table.returncode == 0 and "cli-model" in table.stdout and "READY" in table.stdout
    assert as_json(cli("models", "get", "cli-model", "-ojson"))["uri"] == "s3://pivot-cli/model.pth"
    assert cli("models", "update", "cli-model").returncode == EXIT_USAGE  # nothing to change
    refused = cli("models", "update", "cli-model", "--checkpoint", "other")
    assert refused.returncode == EXIT_INVALID, refused.stderr  # a uri's model: deploy again

    image = tmp_path / "image.npy"
    np.save(image, np.zeros((32, 32), np.float32))
    busy = cli("predict", "cli-model", str(image))
    assert busy.returncode == EXIT_API_ERROR and "no replica" in busy.stderr, busy.stderr
    assert cli("predict", "no-such-model", str(image)).returncode == EXIT_NOT_FOUND

    assert cli("models", "delete", "cli-model").returncode == 0
    assert cli("models", "get", "cli-model").returncode == EXIT_NOT_FOUND
