"""meta.k8s.io/v1 Table rendering, which `kubectl get` asks for."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from decimal import Decimal
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


def go_value_text(value: Any) -> str:
    """A JSON value as Go's fmt prints it (`%v`), which is how the API server's JSONPath
    turns a scalar into a string column's text: floats in their shortest form, with an
    exponent from 1e+06 on and below 1e-04."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if value == 0:
            return "-0" if math.copysign(1.0, value) < 0 else "0"
        sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
        assert isinstance(exp, int)
        text = "".join(map(str, digits))
        point = len(text) + exp  # where the decimal point goes in the digits
        if point - 1 < -4 or point - 1 >= 6:  # strconv 'g' with the shortest precision
            mantissa = text[0] + (f".{text[1:]}" if len(text) > 1 else "")
            body = f"{mantissa}e{'-' if point - 1 < 0 else '+'}{abs(point - 1):02d}"
        elif point <= 0:
            body = "0." + "0" * -point + text
        elif point >= len(text):
            body = text + "0" * (point - len(text))
        else:
            body = f"{text[:point]}.{text[point:]}"
        return ("-" if sign else "") + body
    return str(value)


def typed_cell(kind: str, value: Any) -> Any:
    """A printer column's cell as the API server's table convertor makes it (apiextensions
    tableconvertor `cellForJSONValue`): the column's type decides, a value of another type
    is no cell (kubectl shows <none>), and a string column gets the value's text."""
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"))
        return go_value_text(value)
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value)  # a float is truncated, as Go's int64(f)
    if kind == "number":
        # Kept as it came (an integer stays one): Go writes float64(3) as 3 all the same.
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    return value


def _cell(col: dict[str, Any], obj: dict[str, Any]) -> Any:
    value = json_path(obj, col["jsonPath"])
    if value is None:
        return None
    if col.get("type") == "date":
        if not isinstance(value, str):
            return None
        try:  # RFC 3339, as metav1.Time parses it
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "<invalid>"  # what the server shows for a timestamp it cannot parse
        if t.tzinfo is None:
            return "<invalid>"
        return human_duration((dt.datetime.now(dt.UTC) - t).total_seconds())
    return typed_cell(str(col.get("type", "string")), value)


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
