"""Reaching an API server through a kubeconfig: the emulator's or a real cluster's (kind in CI).

Tests and the local platform speak plain HTTP to the API; against a real cluster that needs the
kubeconfig's TLS material and credentials, which `kube_http_client` turns into an httpx client.
"""

from __future__ import annotations

import atexit
import base64
import os
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

KUBECTL = Path(sys.executable).parent / "kubectl"


def _current(cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The current context's cluster and user entries."""
    ctx_name = cfg.get("current-context")
    contexts = {c["name"]: c["context"] for c in cfg.get("contexts") or []}
    if ctx_name not in contexts:
        raise ValueError(f"kubeconfig has no current context (current-context: {ctx_name!r})")
    ctx = contexts[ctx_name]
    clusters = {c["name"]: c["cluster"] for c in cfg.get("clusters") or []}
    users = {u["name"]: u.get("user") or {} for u in cfg.get("users") or []}
    return clusters[ctx["cluster"]], users.get(ctx.get("user", ""), {})


def _material(entry: dict[str, Any], key: str, base: Path) -> str | None:
    """A file path for `key` (e.g. client-certificate), writing `key-data` out when inline."""
    if entry.get(f"{key}-data"):
        fd, path = tempfile.mkstemp(prefix="pivot-kube-", suffix=".pem")
        with os.fdopen(fd, "wb") as out:
            out.write(base64.b64decode(entry[f"{key}-data"]))
        atexit.register(lambda: Path(path).unlink(missing_ok=True))
        return path
    if entry.get(key):
        return str(base / entry[key])
    return None


def kube_http_client(kubeconfig: str | Path, timeout: float = 30.0) -> httpx.Client:
    """An httpx client with the kubeconfig's server as base_url and its credentials.

    Supports what kind, k3d and the emulator write (client certificates, bearer tokens, basic
    auth, CA data or files); exec/auth-provider plugins are not run.
    """
    path = Path(kubeconfig)
    cfg = yaml.safe_load(path.read_text())
    cluster, user = _current(cfg)
    if user.get("exec") or user.get("auth-provider"):
        raise ValueError(f"{path}: exec/auth-provider credentials are not supported here")
    server = str(cluster["server"]).rstrip("/")
    headers: dict[str, str] = {}
    auth: tuple[str, str] | None = None
    if user.get("token"):
        headers["Authorization"] = f"Bearer {user['token']}"
    elif user.get("username"):
        auth = (str(user["username"]), str(user.get("password") or ""))
    verify: ssl.SSLContext | bool = True
    if server.startswith("https"):
        if cluster.get("insecure-skip-tls-verify"):
            verify = False
        else:
            ca = _material(cluster, "certificate-authority", path.parent)
            verify = ssl.create_default_context(cafile=ca)
            cert = _material(user, "client-certificate", path.parent)
            key = _material(user, "client-key", path.parent)
            if cert and key:
                verify.load_cert_chain(cert, key)
    return httpx.Client(base_url=server, headers=headers, auth=auth, verify=verify, timeout=timeout)


def apply_manifests(kubeconfig: str | Path, manifests: list[Path]) -> None:
    """Server-side apply (idempotent; a shared cluster may have them already), then wait for
    every CRD among them to be Established."""
    args = [str(KUBECTL), "--kubeconfig", str(kubeconfig)]
    files = [a for m in manifests for a in ("-f", str(m))]
    for cmd in (
        [*args, "apply", "--server-side", "--force-conflicts", "--field-manager=pivot-tests"],
        [*args, "wait", "--for=condition=Established", "--timeout=60s"],
    ):
        proc = subprocess.run(
            [*cmd, *files], capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[3:])} failed: {proc.stderr.strip()}")
