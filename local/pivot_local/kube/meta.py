"""ObjectMeta validation the real server applies to every kind: names, labels, annotations.

These are the checks that most often pass locally and fail on a cluster (a label value with a
space, a Service named after a 40-character id that starts with a digit), so they are kept.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QNAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# Kinds whose names are DNS labels rather than subdomains.
_NAME_RULE = {("", "namespaces"): "1123-label", ("", "services"): "1035-label"}


def _cause(field: str, message: str) -> dict[str, str]:
    return {"reason": "FieldValueInvalid", "field": field, "message": message}


def name_causes(key: tuple[str, str], name: str) -> list[dict[str, str]]:
    rule = _NAME_RULE.get(key, "subdomain")
    if rule == "1035-label":
        if len(name) <= 63 and _LABEL_1035.match(name):
            return []
        return [_cause("metadata.name", f'Invalid value: "{name}": a DNS-1035 label must consist '
                       "of lower case alphanumeric characters or '-', start with an alphabetic "
                       "character, and end with an alphanumeric character (e.g. 'my-name',  or "
                       "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")]
    if rule == "1123-label":
        if len(name) <= 63 and _LABEL_1123.match(name):
            return []
        return [_cause("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 label '
                       "must consist of lower case alphanumeric characters or '-', and must start "
                       "and end with an alphanumeric character")]
    if len(name) <= 253 and _SUBDOMAIN.match(name):
        return []
    return [_cause("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                   "must consist of lower case alphanumeric characters, '-' or '.', and must "
                   "start and end with an alphanumeric character")]


def _key_causes(field: str, key: Any) -> list[dict[str, str]]:
    if not isinstance(key, str):
        return [_cause(field, f"Invalid value: {json.dumps(key)}: keys must be strings")]
    prefix, _, name = key.rpartition("/")
    ok = 0 < len(name) <= 63 and bool(_QNAME.match(name))
    if prefix:
        ok = ok and len(prefix) <= 253 and bool(_SUBDOMAIN.match(prefix))
    if ok:
        return []
    return [_cause(field, f'Invalid value: "{key}": name part must consist of alphanumeric '
                   "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                   "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                   "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")]


def meta_causes(key: tuple[str, str], meta: dict[str, Any]) -> list[dict[str, str]]:
    """What is wrong with an object's metadata, as Status causes (empty when valid)."""
    causes = name_causes(key, str(meta.get("name", "")))
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return [*causes, _cause("metadata.labels", "Invalid value: labels must be a map")]
    for k, v in labels.items():
        causes += _key_causes("metadata.labels", k)
        if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.match(v):
            causes.append(_cause("metadata.labels", f"Invalid value: {json.dumps(v)}: a valid "
                                 "label must be an empty string or consist of alphanumeric "
                                 "characters, '-', '_' or '.', and must start and end with an "
                                 "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                                 "'12345', regex used for validation is "
                                 "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"))
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        return [*causes, _cause("metadata.annotations", "Invalid value: must be a map")]
    size = 0
    for k, v in annotations.items():
        causes += _key_causes("metadata.annotations", k)
        if not isinstance(v, str):
            causes.append(_cause("metadata.annotations",
                                 f"Invalid value: {json.dumps(v)}: values must be strings"))
        size += len(str(k)) + len(str(v))
    if size > 256 * 1024:
        causes.append({"reason": "FieldValueTooLong", "field": "metadata.annotations",
                       "message": "Too long: must have at most 262144 bytes"})
    return causes
