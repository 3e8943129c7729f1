"""`pivot up`: the platform on this machine, serving until Ctrl-C; `--demo` trains a session."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from pivot_client.cli import stdout_gone
from pivot_local.claims import PlatformBusy
from pivot_local.platform import REPO_ROOT, LocalPlatform

TERMINAL = {"completed", "failed", "stopped"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demo", action="store_true", help="create and train a demo session")
    parser.add_argument("--host", default="127.0.0.1", help="address every part listens on")
    parser.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument(
        "--data-dir",
        default=".pivot",
        help="kept across restarts: Kubernetes objects, Redis (AOF), S3 objects, logs"
        " (default .pivot; delete it to start from nothing)",
    )
    parser.add_argument(
        "--config", default="configs/train.yaml", help="demo config, relative to the repo root"
    )
    parser.add_argument("--workers", type=int, default=1, help="API worker processes")
    parser.add_argument(
        "--no-auth",
        action="store_true",
        default=os.environ.get("PIVOT_AUTH_ENABLED", "").lower() in {"0", "false", "no"},
        help="run the API without API keys (default: a fresh admin key, printed at start;"
        " also PIVOT_AUTH_ENABLED=false)",
    )
    parser.add_argument(
        "--no-rate-limit",
        action="store_true",
        default=os.environ.get("PIVOT_RATE_LIMIT_ENABLED", "").lower() in {"0", "false", "no"},
        help="no per-IP rate limits (default: 100/minute and 1000/hour, as on a cluster)",
    )


def _print(msg: str) -> None:
    try:
        print(msg, flush=True)
    except BrokenPipeError:
        # Whoever read the output has gone (`pivot up | head`): serve on, quietly, and stop
        # as usual on Ctrl-C (a traceback here would skip stopping the platform).
        stdout_gone()


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses: a wildcard address is not one to connect to."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"http://{host}:{port}"


def run_demo(
    api: str, config_path: str, stop: threading.Event, headers: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """Create a session through the REST API, start it and show its progress to the end."""
    with httpx.Client(base_url=f"{api}/api/v1", timeout=30, headers=headers) as http:
        resp = http.post(
            "/training/sessions",
            json={"config_path": config_path, "session_name": "demo", "tags": ["demo"]},
        )
        resp.raise_for_status()
        session_id = resp.json()["session_id"]
        _print(f"created session {session_id} from {config_path}")
        http.post(f"/training/sessions/{session_id}/start").raise_for_status()
        _print(f"started {session_id}")
        shown: tuple[Any, Any] = (None, None)
        started = time.monotonic()
        while not stop.is_set():
            try:
                body = http.get(f"/training/sessions/{session_id}").json()
            except httpx.TransportError:  # the API is restarting (supervision says so)
                stop.wait(1.0)
                continue
            status, epoch = body["status"], body.get("current_epoch") or 0
            if (status, epoch) != shown:
                metrics = body.get("latest_metrics") or {}
                loss = metrics.get("val_loss")
                tail = f"  val_loss={loss:.4f}" if isinstance(loss, int | float) else ""
                _print(
                    f"[{time.monotonic() - started:6.1f}s] {session_id} {status:<9} "
                    f"epoch {epoch}/{body.get('total_epochs')}{tail}"
                )
                shown = (status, epoch)
            if status in TERMINAL:
                if status == "completed":
                    rows = http.get(f"/training/sessions/{session_id}/metrics").json()["metrics"]
                    if rows:
                        last = rows[-1]
                        summary = ", ".join(
                            f"{k}={v:.4f}" for k, v in last.items() if isinstance(v, float)
                        )
                        _print(f"final metrics (epoch {last['epoch']}): {summary}")
                else:
                    _print(f"session ended {status}: {body.get('message')}")
                return dict(body)
            stop.wait(1.0)
    return None


def write_key_file(data_dir: Path, key: str) -> Path:
    """The key for scripts (`export PIVOT_API_KEY=$(cat .pivot/api-key)`), owner-readable."""
    path = data_dir / "api-key"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return path


def main(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    platform = LocalPlatform(
        data_dir=Path(args.data_dir),
        host=args.host,
        api_port=args.port,
        api_workers=args.workers,
        auth=not args.no_auth,
        rate_limit=not args.no_rate_limit,
        # A part that dies is said and restarted; one that keeps dying stops PIVOT.
        supervise=True,
        report=lambda msg: _print(f"pivot up: {msg}"),
        on_give_up=lambda _reason: stop.set(),
    )
    try:
        platform.claim()  # before anything is written or started
    except PlatformBusy as exc:
        _print(f"pivot up: {exc}")
        return 2
    _print("starting PIVOT: redis, s3, kubernetes API emulator, kubelet, operator, api ...")
    t0 = time.monotonic()
    try:
        platform.start()
    except Exception as exc:
        _print(f"pivot up failed: {exc}")
        return 1
    try:
        _print(f"PIVOT is up in {time.monotonic() - t0:.1f}s")
        _print(f"  API        {platform.api_url}/api/v1  (docs: {platform.api_url}/docs)")
        # The key in the fragment: a browser never sends it, so it is in no server's log.
        fragment = f"#key={platform.api_key}" if platform.api_key else ""
        _print(f"  dashboard  {platform.api_url}/ui/{fragment}")
        _print(f"  kubeconfig {platform.kubeconfig}  (kubectl --kubeconfig ... get ts)")
        _print(f"  logs       {platform.logs}")
        # What the `pivot` command and the SDKs read: PIVOT_URL (else localhost:8000, which
        # is not this API under --port) and PIVOT_API_KEY.
        export_url = f"             export PIVOT_URL={client_url(args.host, args.port)}"
        if platform.api_key:
            key_file = write_key_file(platform.data_dir, platform.api_key)
            _print(f"  API key    {platform.api_key}  (admin; also in {key_file})")
            _print(export_url)
            _print(f"             export PIVOT_API_KEY={platform.api_key}")
        else:
            _print("  API key    none: the API runs without keys (--no-auth)")
            _print(export_url)
        rc = 0
        if args.demo:
            config = args.config
            if not (REPO_ROOT / config).exists() and not Path(config).exists():
                _print(f"demo config {config} not found")
                return 1
            result = run_demo(platform.api_url, config, stop, platform.api_headers())
            if result is not None and result["status"] != "completed":
                rc = 1
        if not stop.is_set():
            _print("serving; press Ctrl-C to stop")
            stop.wait()
        return 1 if platform.failure else rc
    finally:
        _print("stopping PIVOT ...")
        platform.stop()
        _print("stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="pivot up")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
