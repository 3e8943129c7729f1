"""ModelServers through the API, and predictions forwarded to their Ready pods.

The API writes ModelServer resources (the operator does the rest, as for a `kubectl apply`)
and finds a server's Ready pods the way a cluster's own clients do: from the EndpointSlices of
its Service (the local platform writes them too, pivot_local.controllers). A prediction goes to
one Ready pod over a pooled connection, round robin; a pod that refuses the connection or
answers 503 (it is draining, or not ready yet) is skipped for the next one, and the endpoints
are read afresh, so a rolling update or a scale-down loses no request. With no Ready pod the
answer is 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError as PydanticValidationError

from pivot_api.errors import (
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    UpstreamError,
    ValidationError,
)
from pivot_api.models.schemas import (
    DeployModelRequest,
    ModelCondition,
    ModelDetail,
    ModelList,
    UpdateModelRequest,
)
from pivot_schema.crd import GROUP, VERSION
from pivot_schema.modelserver import (
    CHECKPOINT_BEST,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_DELAY_MS,
    DEFAULT_THRESHOLD,
    MS_PLURAL,
    ModelServerSpec,
    new_model_server,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# How long a server's Ready endpoints are reused before they are read again (a failure reads
# them again at once).
ENDPOINTS_TTL_S = 1.0
# While a prediction waits for endpoints, reads this recent serve every request waiting.
ENDPOINTS_POLL_S = 0.1
RETRY_AFTER_S = "1"
# How long a prediction waits for the endpoints of a server whose status has Ready replicas.
ENDPOINTS_CATCH_UP_S = 3.0


def _spec(request: DeployModelRequest) -> ModelServerSpec:
    source: Obj = (
        {"session": request.session_id, "checkpoint": request.checkpoint or CHECKPOINT_BEST}
        if request.session_id is not None
        else {"uri": request.uri, "sha256": request.sha256, "checkpoint": request.checkpoint}
    )
    body: Obj = {"source": source, "replicas": request.replicas}
    if request.batching is not None:
        body["batching"] = {
            "maxBatchSize": request.batching.max_batch_size,
            "maxDelayMs": request.batching.max_delay_ms,
        }
    if request.threshold is not None:
        body["threshold"] = request.threshold
    if request.compile is not None:
        body["compile"] = request.compile
    if request.resources is not None:
        body["resources"] = request.resources.model_dump(exclude_none=True)
    if request.node_selector is not None:
        body["nodeSelector"] = request.node_selector
    if request.tolerations is not None:
        body["tolerations"] = [
            {
                "key": t.key,
                "operator": t.operator,
                "value": t.value,
                "effect": t.effect,
                "tolerationSeconds": t.toleration_seconds,
            }
            for t in request.tolerations
        ]
    return ModelServerSpec.model_validate(body)


def to_detail(obj: Obj, prefix: str) -> ModelDetail:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    source = spec.get("source") or {}
    batching = spec.get("batching") or {}
    return ModelDetail(
        name=meta["name"],
        status=str(status.get("phase") or "Pending").lower(),  # type: ignore[arg-type]
        session_id=source.get("session"),
        checkpoint=(
            source.get("checkpoint")
            if source.get("session") or source.get("checkpoint") not in (None, "best", "latest")
            else None  # a uri's id defaults to its folder's name, not `best`
        ),
        uri=source.get("uri"),
        checkpoint_id=status.get("checkpointId"),
        sha256=status.get("sha256"),
        replicas=int(spec.get("replicas", 1)),
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        max_batch_size=int(batching.get("maxBatchSize") or DEFAULT_MAX_BATCH_SIZE),
        max_delay_ms=float(batching.get("maxDelayMs", DEFAULT_MAX_DELAY_MS)),
        threshold=float(spec.get("threshold", DEFAULT_THRESHOLD)),
        predict_url=f"{prefix}/models/{meta['name']}/predict",
        created_at=meta.get("creationTimestamp"),
        message=status.get("message"),
        conditions=[
            ModelCondition(
                type=c.get("type", ""),
                status=c.get("status", "Unknown"),
                reason=c.get("reason"),
                message=c.get("message"),
                last_transition_time=c.get("lastTransitionTime"),
            )
            for c in status.get("conditions") or []
        ],
    )


@dataclass
class _Endpoints:
    addresses: list[str]  # host:port of Ready pods
    read_at: float


@dataclass
class Forwarded:
    status_code: int
    body: bytes
    content_type: str


class ModelService:
    def __init__(
        self, kube: client.ApiClient, namespace: str, prefix: str, *, timeout_s: float = 60.0
    ) -> None:
        self._custom = client.CustomObjectsApi(kube)
        self._discovery = client.DiscoveryV1Api(kube)
        self._namespace = namespace
        self._prefix = prefix
        self._endpoints: dict[str, _Endpoints] = {}
        self._reading: dict[str, asyncio.Future[list[str]]] = {}  # one read a server at a time
        self._turn = itertools.count()
        # One pool for every server's pods: connections are reused across predictions.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=2.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- the resources -----------------------------------------------------------------------

    async def _call(self, doing: str, call: Any) -> Any:
        try:
            return await call
        except ApiException as exc:
            if exc.status == 404:
                raise
            if exc.status == 409:
                raise
            raise UpstreamError(
                f"Kubernetes API error while {doing}", {"status": exc.status, "reason": exc.reason}
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceUnavailableError(
                "the Kubernetes API server is unreachable", {"reason": str(exc)}
            ) from exc

    async def deploy(self, request: DeployModelRequest) -> ModelDetail:
        try:
            spec = _spec(request)
        except PydanticValidationError as exc:
            raise ValidationError("invalid model server", {"reason": str(exc)}) from exc
        body = new_model_server(request.name, spec)
        try:
            obj = await self._call(
                "creating the model server",
                self._custom.create_namespaced_custom_object(
                    GROUP, VERSION, self._namespace, MS_PLURAL, body, _request_timeout=30
                ),
            )
        except ApiException as exc:
            if exc.status == 409:
                raise ConflictError(
                    f"a model server named {request.name} exists", {"name": request.name}
                ) from exc
            raise
        return to_detail(obj, self._prefix)

    async def _get(self, name: str) -> Obj:
        try:
            obj: Obj = await self._call(
                "reading the model server",
                self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, self._namespace, MS_PLURAL, name, _request_timeout=30
                ),
            )
        except ApiException as exc:
            raise NotFoundError(f"model not found: {name}", {"name": name}) from exc
        return obj

    async def get(self, name: str) -> ModelDetail:
        return to_detail(await self._get(name), self._prefix)

    async def list_all(self) -> ModelList:
        body = await self._call(
            "listing model servers",
            self._custom.list_namespaced_custom_object(
                GROUP, VERSION, self._namespace, MS_PLURAL, _request_timeout=30
            ),
        )
        items = sorted(body.get("items") or [], key=lambda o: o["metadata"]["name"])
        return ModelList(models=[to_detail(o, self._prefix) for o in items], total=len(items))

    async def update(self, name: str, request: UpdateModelRequest) -> ModelDetail:
        current = await self._get(name)
        patch: Obj = {}
        if request.replicas is not None:
            patch["replicas"] = request.replicas
        if request.checkpoint is not None:
            source = (current.get("spec") or {}).get("source") or {}
            if "session" not in source:
                raise ValidationError(
                    "this model serves a uri: deploy it again to serve another file",
                    {"field": "checkpoint"},
                )
            patch["source"] = {"checkpoint": request.checkpoint}
        if not patch:
            return to_detail(current, self._prefix)
        try:
            obj = await self._call(
                "updating the model server",
                self._custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self._namespace,
                    MS_PLURAL,
                    name,
                    {"spec": patch},
                    _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                    _request_timeout=30,
                ),
            )
        except ApiException as exc:
            raise NotFoundError(f"model not found: {name}", {"name": name}) from exc
        return to_detail(obj, self._prefix)

    async def delete(self, name: str) -> None:
        try:
            await self._call(
                "deleting the model server",
                self._custom.delete_namespaced_custom_object(
                    GROUP, VERSION, self._namespace, MS_PLURAL, name, _request_timeout=30
                ),
            )
        except ApiException as exc:
            raise NotFoundError(f"model not found: {name}", {"name": name}) from exc
        self._endpoints.pop(name, None)

    # ---- predictions -------------------------------------------------------------------------

    async def _ready(self, name: str, *, max_age: float = ENDPOINTS_TTL_S) -> list[str]:
        """The addresses of the server's Ready pods, read at most `max_age` seconds ago. The
        requests that need a new read share one (a rollout's burst of retries is one LIST)."""
        cached = self._endpoints.get(name)
        if cached is not None and time.monotonic() - cached.read_at <= max_age:
            return cached.addresses
        reading = self._reading.get(name)
        if reading is None:
            reading = self._reading[name] = asyncio.ensure_future(self._read_endpoints(name))
            reading.add_done_callback(
                lambda done: self._reading.pop(name) if self._reading.get(name) is done else None
            )
        return await asyncio.shield(reading)

    async def _read_endpoints(self, name: str) -> list[str]:
        body = await self._call(
            "reading the model's endpoints",
            self._discovery.list_namespaced_endpoint_slice(
                self._namespace,
                label_selector=f"{SERVICE_NAME_LABEL}={name}",
                _preload_content=False,
                _request_timeout=10,
            ),
        )
        try:
            if body.status != 200:
                raise UpstreamError(
                    "Kubernetes API error while reading the model's endpoints",
                    {"status": body.status},
                )
            slices = await body.json()
        finally:
            body.release()
        addresses = []
        for item in slices.get("items") or []:
            ports = [p.get("port") for p in item.get("ports") or [] if p.get("port")]
            if not ports:
                continue
            for endpoint in item.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready"):
                    addresses += [f"{a}:{ports[0]}" for a in endpoint.get("addresses") or []]
        self._endpoints[name] = _Endpoints(sorted(addresses), time.monotonic())
        return self._endpoints[name].addresses

    async def open_predict(self, name: str) -> int:
        """404 for an unknown model before its body is read; its Ready replica count."""
        obj = await self._get(name)
        return int((obj.get("status") or {}).get("readyReplicas") or 0)

    async def predict(
        self, name: str, body: bytes, content_type: str, query: str, *, ready_replicas: int = 0
    ) -> Forwarded:
        tried: set[str] = set()
        max_age = ENDPOINTS_TTL_S
        # The server says a replica is Ready, the EndpointSlice may not list it yet (they are
        # written a moment after the pod's status, on a cluster as here): wait that moment,
        # also after every pod listed has failed: in a rollout the old pod drains as soon as
        # the new one is Ready, before the slice names the new one.
        patience = time.monotonic() + (ENDPOINTS_CATCH_UP_S if ready_replicas else 0.0)
        while True:
            ready = [a for a in await self._ready(name, max_age=max_age) if a not in tried]
            if not ready:
                if max_age > ENDPOINTS_POLL_S:
                    max_age = 0.0  # what was cached may be stale: read at once
                    continue
                if time.monotonic() >= patience:
                    break
                await asyncio.sleep(ENDPOINTS_POLL_S)
                max_age = ENDPOINTS_POLL_S
                continue
            start = next(self._turn) % len(ready)
            for address in ready[start:] + ready[:start]:
                tried.add(address)
                url = f"http://{address}/predict" + (f"?{query}" if query else "")
                try:
                    resp = await self._http.post(
                        url, content=body, headers={"content-type": content_type}
                    )
                except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                    log.info("model %s: pod %s failed (%s); trying another", name, address, exc)
                    continue
                if resp.status_code == 503:
                    continue  # draining or loading: another pod serves it
                return Forwarded(
                    resp.status_code,
                    resp.content,
                    resp.headers.get("content-type", "application/json"),
                )
            max_age = 0.0  # what was read is stale: read the endpoints again
        raise ServiceUnavailableError(
            f"no replica of model {name} is ready; retry shortly",
            {"name": name, "tried": len(tried)},
            headers={"Retry-After": RETRY_AFTER_S},
        )
