"""The whole PIVOT platform on one machine: Redis, S3, the Kubernetes API emulator, the process
kubelet, the operator and the API, wired as they are on a cluster."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from pivot_local.cluster import kube_http_client
from pivot_local.procs import free_port, spawn, terminate, wait_until_serving
from pivot_local.services import RedisServer, S3Server
from pivot_schema import env as tenv
from pivot_schema.crd import crd_manifest_path

REPO_ROOT = crd_manifest_path().parent.parent
# kopf's peering CRDs (leader election between operator replicas) and the peering's name.
PEERING_CRDS = crd_manifest_path().parent / "kopf-peering.yaml"
PEERING_NAME = "pivot-operator"


class LocalPlatform:
    """Start with `start()` (or as a context manager); every part listens on `host` only."""

    def __init__(
        self,
        *,
        data_dir: str | Path,
        host: str = "127.0.0.1",
        api_port: int = 8000,
        namespace: str = "default",
        configs_dir: str | Path | None = None,
        with_api: bool = True,
        api_workers: int = 1,
        extra_env: dict[str, str] | None = None,
        kubeconfig: str | Path | None = None,
        auth: bool = True,
        rate_limit: bool = True,
    ):
        """With `kubeconfig`, use that cluster (the TrainingSession and kopf peering CRDs
        installed) instead of starting the emulator and the process kubelet; `namespace` is
        created if missing and deleted on stop."""
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.api_port = api_port or free_port(host)
        self.namespace = namespace
        self.configs_dir = Path(configs_dir or REPO_ROOT / "configs").resolve()
        self.with_api = with_api
        self.api_workers = api_workers
        self.extra_env = extra_env or {}
        # An admin key made for this run, as a notebook server makes its token: the API
        # accepts only it (None with auth=False, which runs the API without keys).
        self.api_key: str | None = f"pvt_{secrets.token_urlsafe(32)}" if auth else None
        self.rate_limit = rate_limit
        self.logs = self.data_dir / "logs"
        self.redis: RedisServer | None = None
        self.s3: S3Server | None = None
        self.kube: Any = None
        self.kubelet: Any = None
        self.external = kubeconfig is not None
        self.kubeconfig = Path(kubeconfig).resolve() if kubeconfig else self.data_dir / "kubeconfig"
        self.operator: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self._stack = contextlib.ExitStack()

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    # -- start / stop ----------------------------------------------------------------------

    def start(self) -> LocalPlatform:
        from pivot_local.kube import run_emulator_in_thread
        from pivot_local.kubelet import run_kubelet_in_thread

        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self.redis = RedisServer(host=self.host, data_dir=self.data_dir / "redis").start()
            self._stack.callback(self.redis.stop)
            self.s3 = S3Server(host=self.host).start()
            self._stack.callback(self.s3.stop)
            if self.external:
                self._create_namespace()
            else:
                self.kube = self._stack.enter_context(
                    run_emulator_in_thread(host=self.host, crds=[crd_manifest_path(), PEERING_CRDS])
                )
                self.kube.write_kubeconfig(self.kubeconfig)
            self._create_s3_secret()
            self._create_peering()
            if not self.external:
                self.kubelet = self._stack.enter_context(
                    run_kubelet_in_thread(self.kubeconfig, self.data_dir / "kubelet")
                )
                self.kube.set_log_source(self.kubelet.log_path)
            self._stack.callback(self.stop_operator)
            self.start_operator()
            if self.with_api:
                self._stack.callback(self.stop_api)
                self.start_api()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything in reverse order: API, operator, kubelet (kills trainers), emulator,
        S3, Redis."""
        self._stack.close()

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- parts -----------------------------------------------------------------------------

    def component_env(self) -> dict[str, str]:
        """Env for the operator and the API: what Helm sets on a cluster."""
        assert self.redis is not None and self.s3 is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOT_")}
        env.update(
            {
                "KUBECONFIG": str(self.kubeconfig),
                "PIVOT_KUBECONFIG": str(self.kubeconfig),
                "PIVOT_NAMESPACE": self.namespace,
                "PIVOT_NAMESPACES": self.namespace,
                "PIVOT_REDIS_URL": self.redis.url,
                "PIVOT_S3_ENDPOINT": self.s3.endpoint,
                "PIVOT_S3_BUCKET": self.s3.bucket,
                "PIVOT_S3_REGION": self.s3.region,
                "PIVOT_S3_ACCESS_KEY": self.s3.access_key,
                "PIVOT_S3_SECRET_KEY": self.s3.secret_key,
                "PIVOT_S3_SECRET": "pivot-s3",
                "PIVOT_CONFIGS_DIR": str(self.configs_dir),
                "PIVOT_TRAINER_IMAGE": "pivot-trainer:local",
                # Webhooks may reach receivers on this machine (demos, tests).
                "PIVOT_WEBHOOK_ALLOWLIST": '["127.0.0.0/8", "::1/128", "localhost"]',
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def http(self) -> httpx.Client:
        """An HTTP client for the Kubernetes API (the emulator's or the cluster's)."""
        return kube_http_client(self.kubeconfig)

    def _create_namespace(self) -> None:
        with self.http() as kube:
            resp = kube.post("/api/v1/namespaces", json={"metadata": {"name": self.namespace}})
        if resp.status_code not in (201, 409):
            raise RuntimeError(f"could not create {self.namespace}: {resp.status_code} {resp.text}")
        if self.namespace != "default":
            self._stack.callback(self._delete_namespace)

    def _delete_namespace(self) -> None:
        with self.http() as kube:
            kube.delete(f"/api/v1/namespaces/{self.namespace}")

    def api_env(self) -> dict[str, str]:
        """The API's env: the components' plus its key and rate limits (extra_env wins)."""
        env = self.component_env()
        env["PIVOT_AUTH_ENABLED"] = "true" if self.api_key else "false"
        if self.api_key:
            env["PIVOT_API_KEYS"] = f"local:admin:{self.api_key}"
        env["PIVOT_RATE_LIMIT_ENABLED"] = "true" if self.rate_limit else "false"
        env.update(self.extra_env)
        return env

    def api_headers(self) -> dict[str, str]:
        """Headers a client of this platform's API sends."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _create_s3_secret(self) -> None:
        assert self.s3 is not None
        data = {
            tenv.SECRET_ACCESS_KEY_FIELD: self.s3.access_key,
            tenv.SECRET_SECRET_KEY_FIELD: self.s3.secret_key,
        }
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pivot-s3", "namespace": self.namespace},
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        with self.http() as kube:
            resp = kube.post(f"/api/v1/namespaces/{self.namespace}/secrets", json=secret)
        if resp.status_code not in (201, 409):
            raise RuntimeError(f"could not create the S3 secret: {resp.status_code} {resp.text}")

    def _create_peering(self) -> None:
        """The KopfPeering object replicas elect their leader on (what Helm would install)."""
        body = {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": PEERING_NAME, "namespace": self.namespace},
        }
        url = f"/apis/kopf.dev/v1/namespaces/{self.namespace}/kopfpeerings"
        with self.http() as kube:
            resp = kube.post(url, json=body)
        if resp.status_code not in (201, 409):
            raise RuntimeError(f"could not create the peering: {resp.status_code} {resp.text}")

    def spawn_operator(
        self, extra_env: dict[str, str] | None = None, log_name: str = "operator.log"
    ) -> subprocess.Popen[bytes]:
        """An operator process (the platform's own, or an extra replica a test starts)."""
        with open(self.logs / log_name, "ab") as out:
            return spawn(
                [sys.executable, "-m", "pivot_operator"],
                env={**self.component_env(), **(extra_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def start_operator(self) -> None:
        self.operator = self.spawn_operator()

    def stop_operator(self) -> None:
        if self.operator is not None:
            terminate(self.operator, timeout=10)
            self.operator = None

    def kill_operator(self) -> None:
        """SIGKILL, as a crashed or OOM-killed operator pod would die."""
        if self.operator is not None:
            self.operator.kill()
            self.operator.wait()
            self.operator = None

    def start_api(self, timeout: float = 60.0) -> None:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "pivot_api.app:app",
            "--host",
            self.host,
            "--port",
            str(self.api_port),
            "--workers",
            str(self.api_workers),
            "--no-access-log",
        ]
        with open(self.logs / "api.log", "ab") as out:
            self.api = spawn(argv, env=self.api_env(), stdout=out, stderr=subprocess.STDOUT)
        wait_until_serving(
            f"{self.api_url}/api/v1/health",
            self.api,
            timeout=timeout,
            what="the API",
            log=self.logs / "api.log",
        )

    def stop_api(self) -> None:
        if self.api is not None:
            terminate(self.api, timeout=10)
            self.api = None
