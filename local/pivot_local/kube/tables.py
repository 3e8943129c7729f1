"""meta.k8s.io/v1 Table rendering, which `kubectl get` asks for."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .resources import ResourceType

_NAME_COL = {"name": "Name", "type": "string", "format": "name", "priority": 0,
             "description": "Name must be unique within a namespace."}
_AGE_COL = {"name": "Age", "type": "date", "format": "", "priority": 0,
            "description": "CreationTimestamp is a timestamp representing the server time when "
            "this object was created."}

# Extra columns of built-in kinds, like the server's own printers (abridged).
_BUILTIN_COLUMNS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("", "pods"): [{"name": "Status", "type": "string", "jsonPath": ".status.phase"},
                   {"name": "Node", "type": "string", "jsonPath": ".spec.nodeName",
                    "priority": 1}],
    ("", "namespaces"): [{"name": "Status", "type": "string", "jsonPath": ".status.phase"}],
    ("", "secrets"): [{"name": "Type", "type": "string", "jsonPath": ".type"}],
    ("", "services"): [{"name": "Type", "type": "string", "jsonPath": ".spec.type"},
                       {"name": "Cluster-IP", "type": "string", "jsonPath": ".spec.clusterIP"}],
    ("coordination.k8s.io", "leases"): [
        {"name": "Holder", "type": "string", "jsonPath": ".spec.holderIdentity"}],
}


def human_duration(seconds: float) -> str:
    """Mirrors k8s.io/apimachinery's duration.HumanDuration."""
    s = int(seconds)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


_SEG = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def json_path(obj: Any, path: str) -> Any:
    """The subset of JSONPath printer columns use: .a.b[0].c"""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    cur = obj
    for m in _SEG.finditer(path):
        if m.group(1) is not None:
            cur = cur.get(m.group(1)) if isinstance(cur, dict) else None
        else:
            idx = int(m.group(2))
            cur = cur[idx] if isinstance(cur, list) and idx < len(cur) else None
        if cur is None:
            return None
    return cur


def _columns(rt: ResourceType) -> list[dict[str, Any]]:
    if rt.is_custom:
        cols = rt.printer_columns or [{"name": "Age", "type": "date",
                                       "jsonPath": ".metadata.creationTimestamp"}]
        return cols
    extra = _BUILTIN_COLUMNS.get(rt.key, [])
    return [*extra, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


def _cell(col: dict[str, Any], obj: dict[str, Any]) -> Any:
    value = json_path(obj, col["jsonPath"])
    if value is None:
        return None
    if col.get("type") == "date" and isinstance(value, str):
        try:
            t = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return value
        return human_duration((dt.datetime.now(dt.UTC) - t).total_seconds())
    return value


def to_table(rt: ResourceType, objs: list[dict[str, Any]], include: str,
             list_meta: dict[str, Any]) -> dict[str, Any]:
    cols = _columns(rt)
    defs = [_NAME_COL] + [
        _AGE_COL if c["name"] == "Age" and c.get("type") == "date" else {
            "name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
            "description": c.get("description", ""), "priority": int(c.get("priority", 0))}
        for c in cols
    ]
    rows = []
    for obj in objs:
        if include == "None":
            row_obj: Any = None
        elif include == "Object":
            row_obj = obj
        else:
            row_obj = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": obj["metadata"]}
        rows.append({"cells": [obj["metadata"]["name"], *(_cell(c, obj) for c in cols)],
                     "object": row_obj})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": defs, "rows": rows}
