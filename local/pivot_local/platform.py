"""The whole PIVOT platform on one machine: Redis, S3, the Kubernetes API emulator, the process
kubelet, the operator and the API, wired as they are on a cluster."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from pivot_local.claims import DataDirLock, check_ports
from pivot_local.cluster import kube_http_client
from pivot_local.procs import free_port, spawn, terminate, wait_until_serving
from pivot_local.services import RedisServer, SeaweedS3Server
from pivot_local.supervisor import Part, Supervisor
from pivot_schema import env as tenv
from pivot_schema.crd import crd_manifest_path
from pivot_schema.leases import LEASES_PATH, OPERATOR_LEASE, lease_fresh
from pivot_schema.modelserver import modelserver_crd_path

REPO_ROOT = crd_manifest_path().parent.parent
# kopf's peering CRDs (leader election between operator replicas) and the peering's name.
PEERING_CRDS = crd_manifest_path().parent / "kopf-peering.yaml"
PEERING_NAME = "pivot-operator"
# The operator's heartbeat here: shorter than a cluster's 15 s, so /health notices a stuck
# operator sooner; long enough that a busy 2-core machine does not make it flap.
OPERATOR_LEASE_SECONDS = 10


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
        supervise: bool = False,
        report: Callable[[str], None] | None = None,
        on_give_up: Callable[[str], None] | None = None,
    ):
        """With `kubeconfig`, use that cluster (the TrainingSession and kopf peering CRDs
        installed) instead of starting the emulator and the process kubelet; `namespace` is
        created if missing and deleted on stop.

        With `supervise`, a dead operator, API, Redis (or S3 run as a process) is reported
        through `report` and restarted (pivot_local.supervisor); `on_give_up` is called with
        the reason when one keeps dying."""
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
        self.s3: SeaweedS3Server | None = None
        self.kube: Any = None
        self.kubelet: Any = None
        self.external = kubeconfig is not None
        self.kubeconfig = Path(kubeconfig).resolve() if kubeconfig else self.data_dir / "kubeconfig"
        self.operator: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.supervise = supervise
        self.supervisor: Supervisor | None = None
        self._report = report
        self._on_give_up = on_give_up
        self._lock = DataDirLock(self.data_dir)
        self._claimed = False
        self._stack = contextlib.ExitStack()

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    # -- start / stop ----------------------------------------------------------------------

    def claim(self) -> None:
        """Check the fixed ports, then lock the data dir (start() does it if not yet done).
        Raises PlatformBusy, having started and written nothing, when a port is taken or
        another platform has the data dir."""
        if self._claimed:
            return
        check_ports(self.host, [self.api_port] if self.with_api else [])
        self._lock.acquire()
        self._claimed = True
        # Closed last: the lock; just before it, the supervisor's thread, which the processes
        # it restarted must not outlive (their death signal follows that thread).
        self._stack.callback(self._release)
        self._stack.callback(self._end_supervision)

    def _release(self) -> None:
        self._lock.release()
        self._claimed = False

    def start(self) -> LocalPlatform:
        from pivot_local.controllers import run_controllers_in_thread
        from pivot_local.kube import run_emulator_in_thread
        from pivot_local.kubelet import run_kubelet_in_thread

        self.claim()
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self.redis = RedisServer(host=self.host, data_dir=self.data_dir / "redis").start()
            self._stack.callback(self.redis.stop)
            self.s3 = SeaweedS3Server(host=self.host, data_dir=self.data_dir / "s3").start()
            self._stack.callback(self.s3.stop)
            if self.external:
                self._create_namespace()
            else:
                self.kube = self._stack.enter_context(
                    run_emulator_in_thread(
                        host=self.host,
                        crds=[crd_manifest_path(), modelserver_crd_path(), PEERING_CRDS],
                        data_dir=self.data_dir / "kube",
                    )
                )
                self.kube.write_kubeconfig(self.kubeconfig)
            self._create_s3_secret()
            self._create_peering()
            if not self.external:
                self.kubelet = self._stack.enter_context(
                    run_kubelet_in_thread(self.kubeconfig, self.data_dir / "kubelet")
                )
                self.kube.set_log_source(self.kubelet.log_path)
                self._stack.enter_context(run_controllers_in_thread(self.kubeconfig))
            self._stack.callback(self.stop_operator)
            self.start_operator()
            if self.with_api:
                self._stack.callback(self.stop_api)
                self.start_api()
            self.wait_for_operator()
            if self.supervise:
                self.supervisor = Supervisor(
                    self._parts(), report=self._report, on_give_up=self._on_give_up
                ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything in reverse order: API, operator, kubelet (kills trainers), emulator,
        S3, Redis."""
        if self.supervisor is not None:
            self.supervisor.quiesce()  # nothing restarts what is being stopped
        self._stack.close()

    @property
    def failure(self) -> str | None:
        """Why supervision gave up (a part kept dying), else None."""
        return self.supervisor.failure if self.supervisor is not None else None

    # -- supervision -----------------------------------------------------------------------

    def _parts(self) -> list[Part]:
        parts = [
            Part(
                "operator",
                lambda: self.operator,
                self._restart_operator,
                down_note="sessions are not reconciled until it is back",
                on_death=self._expire_operator_lease,
            ),
            Part(
                "redis",
                lambda: self.redis.proc if self.redis else None,
                self._restart_redis,
                down_note="trainers hold their metrics until it is back",
            ),
            # A process (SeaweedFS), or moto in a thread: no proc, nothing to restart.
            Part("s3", lambda: getattr(self.s3, "proc", None), self._restart_s3),
        ]
        if self.with_api:
            parts.append(
                Part(
                    "api",
                    lambda: self.api,
                    self._restart_api,
                    down_note=f"{self.api_url}/api/v1 (and its /health) is down until it is back",
                )
            )
        return parts

    def _end_supervision(self) -> None:
        if self.supervisor is not None:
            self.supervisor.join()

    def _restart_operator(self) -> None:
        self.start_operator()
        self._or_stop(self.operator, self.wait_for_operator)

    def _restart_api(self) -> None:
        self.start_api(wait=False)
        self._or_stop(self.api, self._wait_for_api)

    @staticmethod
    def _or_stop(proc: subprocess.Popen[bytes] | None, wait: Callable[[], None]) -> None:
        """Wait for a restarted process to come up; one that does not is stopped, so that the
        next restart never runs beside it."""
        try:
            wait()
        except BaseException:
            if proc is not None:
                terminate(proc, timeout=5)
            raise

    def _restart_redis(self) -> None:
        assert self.redis is not None
        self.redis.stop()
        self.redis.start()  # on the same port: every component holds its URL

    def _restart_s3(self) -> None:
        assert self.s3 is not None
        self.s3.stop()
        self.s3.start()

    def _operator_lease_path(self) -> str:
        return f"{LEASES_PATH.format(namespace=self.namespace)}/{OPERATOR_LEASE}"

    def _operator_lease(self) -> dict[str, Any] | None:
        with self.http() as kube:
            resp = kube.get(self._operator_lease_path())
        return dict(resp.json()) if resp.status_code == 200 else None

    def wait_for_operator(self, timeout: float = 60.0) -> None:
        """Until our operator process renews its heartbeat lease (the lease names its pid):
        its startup is done and /health can call it healthy."""
        assert self.operator is not None
        proc, deadline = self.operator, time.monotonic() + timeout
        log = self.logs / "operator.log"
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                raise RuntimeError(
                    f"the operator exited with {proc.returncode}; its log ends:\n{tail}"
                )
            with contextlib.suppress(httpx.HTTPError):
                lease = self._operator_lease()
                holder = str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")
                if lease and holder.endswith(f"-{proc.pid}") and lease_fresh(lease):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator did not renew its lease within {timeout:.0f}s")
            time.sleep(0.2)

    def _expire_operator_lease(self, pid: int) -> None:
        """The operator with `pid` died: drop its heartbeat now, so /health says so at once
        instead of when the lease runs out (only if it still names that process)."""
        with contextlib.suppress(httpx.HTTPError), self.http() as kube:
            resp = kube.get(self._operator_lease_path())
            if resp.status_code != 200:
                return
            lease = resp.json()
            if str(lease["spec"].get("holderIdentity") or "").endswith(f"-{pid}"):
                rv = lease["metadata"]["resourceVersion"]
                kube.request(
                    "DELETE",
                    self._operator_lease_path(),
                    json={"preconditions": {"resourceVersion": rv}},
                )

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
                "PIVOT_OPERATOR_NAMESPACE": self.namespace,
                "PIVOT_OPERATOR_LEASE_SECONDS": str(OPERATOR_LEASE_SECONDS),
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

    def start_api(self, timeout: float = 60.0, *, wait: bool = True) -> None:
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
        if wait:
            self._wait_for_api(timeout)

    def _wait_for_api(self, timeout: float = 60.0) -> None:
        assert self.api is not None
        wait_until_serving(
            f"{self.api_url}/api/v1/health",
            self.api,
            timeout=timeout,
            what="the API",
            log=self.logs / "api.log",
            port=self.api_port,  # answered by this process, not by whoever has the port
        )

    def stop_api(self) -> None:
        if self.api is not None:
            terminate(self.api, timeout=10)
            self.api = None
