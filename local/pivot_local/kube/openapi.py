"""A minimal OpenAPI v3 description of the served resources.

kubectl's default `--validate=strict` reads it to learn that the server validates fields itself
(the `fieldValidation` query parameter on PATCH operations tagged with the GVK); without it,
kubectl falls back to client-side validation, which needs the full OpenAPI v2 document.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import ResourceType

_PARAMS = [
    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
    {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
]


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _patch_types(rt: ResourceType) -> list[str]:
    # Built-ins leave strategic merge out so kubectl computes it from its compiled-in types.
    return ["application/json-patch+json", "application/merge-patch+json",
            "application/apply-patch+yaml"]


def gv_document(types: list[ResourceType], group: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    prefix = "/" + _gv_path(group, version)
    for rt in types:
        gvk = {"group": rt.group, "version": version, "kind": rt.kind}
        ref_name = f"{rt.group or 'core'}.{version}.{rt.kind}"
        validator = rt.validators.get(version)
        schemas[ref_name] = dict(validator.openapi) if validator else {"type": "object"}
        schemas[ref_name]["x-kubernetes-group-version-kind"] = [gvk]
        body = {"content": {ct: {"schema": {"$ref": f"#/components/schemas/{ref_name}"}}
                            for ct in _patch_types(rt)}}
        ok = {"200": {"description": "OK", "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{ref_name}"}}}}}
        op = {"x-kubernetes-group-version-kind": gvk, "parameters": _PARAMS, "responses": ok}
        item_path = (f"{prefix}/namespaces/{{namespace}}/{rt.plural}/{{name}}" if rt.namespaced
                     else f"{prefix}/{rt.plural}/{{name}}")
        paths[item_path] = {
            "get": {**op, "x-kubernetes-action": "get", "parameters": []},
            "put": {**op, "x-kubernetes-action": "put", "requestBody": {"content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{ref_name}"}}}}},
            "patch": {**op, "x-kubernetes-action": "patch", "requestBody": body},
        }
        if rt.has_status:
            paths[item_path + "/status"] = {
                "patch": {**op, "x-kubernetes-action": "patch", "requestBody": body}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0"},
            "paths": paths, "components": {"schemas": schemas}}


def index(types: list[ResourceType]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: dict[str, list[ResourceType]] = {}
    for rt in types:
        for v in rt.versions:
            seen.setdefault(_gv_path(rt.group, v), []).append(rt)
    for path, rts in sorted(seen.items()):
        group, version = split_gv_path(path)
        digest = hashlib.sha512(json.dumps(gv_document(rts, group, version),
                                           sort_keys=True).encode()).hexdigest().upper()
        out[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest[:128]}"}
    return {"paths": out}


def split_gv_path(path: str) -> tuple[str, str]:
    parts = path.split("/")
    return ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
