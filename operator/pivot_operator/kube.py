"""The operator's few Kubernetes calls, in one place (and so in one RBAC list)."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from importlib.metadata import version
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from pivot_schema.crd import GROUP, PLURAL, VERSION
from pivot_schema.kubeclient import without_env_lookups
from pivot_schema.modelserver import LABEL_MODEL_SERVER, MS_PLURAL

MERGE_PATCH = "application/merge-patch+json"


async def checked(call: Awaitable[Any]) -> dict[str, Any]:
    """Await a `_preload_content=False` call: the raw response, as JSON, or ApiException.

    kubernetes_asyncio skips its status check when content is not preloaded, so do it here.
    """
    resp = await call
    body = await resp.read()
    if not 200 <= resp.status < 300:
        raise ApiException(status=resp.status, reason=resp.reason)
    result: dict[str, Any] = json.loads(body) if body else {}
    return result


async def make_api_client(kubeconfig: str | None) -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    api = without_env_lookups(client.ApiClient(configuration))
    api.user_agent = f"pivot-operator/{version('pivot')}"  # tells its requests apart (RBAC audit)
    return api


class Kube:
    def __init__(self, api: client.ApiClient):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await checked(
                self.core.read_namespaced_pod(name, namespace, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def create_pod(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create the pod; None when a pod of that name exists already (409)."""
        try:
            resp = await self.core.create_namespaced_pod(
                namespace, manifest, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        result: dict[str, Any] = await resp.json()
        return result

    async def delete_pod(self, namespace: str, name: str) -> bool:
        try:
            await checked(self.core.delete_namespaced_pod(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def get_session(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await checked(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def patch_session_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch status; with a resourceVersion the write fails (409) if the CR moved on.
        Returns the patched object."""
        return await self._patch_status(PLURAL, namespace, name, status, resource_version)

    async def _patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await checked(
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                body,
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
        )


class SessionKube(Kube):
    """The calls the reconciler adds: the session's pods, its Service, deleting the CR."""

    async def list_session_pods(self, namespace: str, session_name: str) -> list[dict[str, Any]]:
        from pivot_schema.crd import LABEL_SESSION

        result = await checked(
            self.core.list_namespaced_pod(
                namespace,
                label_selector=f"{LABEL_SESSION}={session_name}",
                _preload_content=False,
            )
        )
        return list(result.get("items") or [])

    async def create_service(self, namespace: str, manifest: dict[str, Any]) -> None:
        try:
            await checked(
                self.core.create_namespaced_service(namespace, manifest, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status != 409:
                raise

    async def delete_session(self, namespace: str, name: str) -> None:
        try:
            await checked(
                self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status != 404:
                raise


class ServingKube(SessionKube):
    """A ModelServer's calls: the resource itself, its pods and its Service."""

    async def get_model_server(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await checked(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, MS_PLURAL, name, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def list_server_pods(self, namespace: str, server: str) -> list[dict[str, Any]]:
        result = await checked(
            self.core.list_namespaced_pod(
                namespace,
                label_selector=f"{LABEL_MODEL_SERVER}={server}",
                _preload_content=False,
            )
        )
        return list(result.get("items") or [])

    async def patch_model_server_status(
        self, namespace: str, name: str, status: dict[str, Any], *, resource_version: str | None
    ) -> dict[str, Any]:
        return await self._patch_status(MS_PLURAL, namespace, name, status, resource_version)
