"""Label and field selectors with the API server's syntax."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


class SelectorError(ValueError):
    """The selector string does not parse; the server answers 400."""


def _split_top(expr: str) -> list[str]:
    # Commas inside "in (a,b)" must not split requirements.
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if cur:
        parts.append("".join(cur).strip())
    return [p for p in parts if p]


_SET_RE = re.compile(r"^([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)$")
_EQ_RE = re.compile(r"^([^\s!=]+)\s*(==|=|!=)\s*([^\s]*)$")
_KEY_RE = re.compile(r"[^\s!=(),]+")


def _holds(op: str, key: str, values: frozenset[str], labels: dict[str, str]) -> bool:
    if op == "in":
        return labels.get(key) in values
    if op == "notin":
        return labels.get(key) not in values
    if op == "exists":
        return key in labels
    return key not in labels  # "!exists"


class LabelSelector:
    """A compiled label selector: call it on an object. `equals` lists its `key=value`
    requirements, which the store answers from its label index instead of a scan."""

    def __init__(self, reqs: list[tuple[str, str, frozenset[str]]]) -> None:
        self.reqs = reqs
        self.equals = tuple(
            (key, next(iter(values))) for op, key, values in reqs if op == "in" and len(values) == 1
        )

    def __call__(self, obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(_holds(op, key, values, labels) for op, key, values in self.reqs)


def parse_label_selector(expr: str | None) -> LabelSelector:
    """Compile a label selector into a predicate on an object."""
    reqs: list[tuple[str, str, frozenset[str]]] = []
    for req in _split_top(expr or ""):
        if m := _SET_RE.match(req):
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append((m.group(2), m.group(1), values))
        elif m := _EQ_RE.match(req):
            # "a=b" is "a in (b)"; "a!=b" is "a notin (b)" (true when the label is absent).
            reqs.append(
                ("notin" if m.group(2) == "!=" else "in", m.group(1), frozenset([m.group(3)]))
            )
        elif req.startswith("!") and _KEY_RE.fullmatch(req[1:]):
            reqs.append(("!exists", req[1:], frozenset()))
        elif _KEY_RE.fullmatch(req):
            reqs.append(("exists", req, frozenset()))
        else:
            raise SelectorError(f"unable to parse requirement: {req!r}")
    return LabelSelector(reqs)


def field_value(obj: dict[str, Any], path: str) -> str:
    """A dotted field's value as the string a field selector compares against."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(expr: str | None) -> Predicate:
    """Compile a field selector (=, ==, != on dotted paths) into a predicate."""
    if not expr:
        return lambda _obj: True
    checks: list[tuple[str, bool, str]] = []
    for req in _split_top(expr):
        m = _EQ_RE.match(req)
        if not m:
            raise SelectorError(f"invalid field selector: {req!r}")
        checks.append((m.group(1), m.group(2) != "!=", m.group(3)))

    def pred(obj: dict[str, Any]) -> bool:
        return all((field_value(obj, p) == v) == eq for p, eq, v in checks)

    return pred
