"""`pivot apply -f FILE`: sessions from TrainingSession manifests or create bodies."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pivot_client.cli.common import Commands, connect, load_yaml_all
from pivot_client.cli.exits import EXIT_OK, UsageError
from pivot_client.cli.output import Printer
from pivot_client.cli.sessions import create

# What a TrainingSession's spec may carry through the API's create body.
_API_SPEC_FIELDS = {
    *("config", "sessionName", "tags", "suspend"),
    *("resources", "nodeSelector", "tolerations", "replicas"),
}
# The create body's fields (a body, not a manifest, may be applied too).
_BODY_FIELDS = {
    *("config", "config_path", "session_name", "tags"),
    *("resources", "node_selector", "tolerations", "replicas"),
}


def register(commands: Commands) -> None:
    cmd = commands.add("apply", "create sessions from a YAML file", cmd_apply)
    cmd.add_argument("-f", "--file", required=True, help="TrainingSession manifest(s) or body")
    cmd.add_argument("--start", action="store_true", help="start what is created")


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def body_from_document(doc: Any) -> tuple[dict[str, Any], bool]:
    """A create body (and whether to start) from a TrainingSession manifest or a body."""
    if not isinstance(doc, dict):
        raise UsageError("the file must hold a mapping")
    if doc.get("kind") == "TrainingSession":
        spec = doc.get("spec")
        if not isinstance(spec, dict) or "config" not in spec:
            raise UsageError("a TrainingSession manifest needs spec.config")
        extra = sorted(set(spec) - _API_SPEC_FIELDS)
        if extra:
            # Silently dropping e.g. resources would train something else than asked for.
            raise UsageError(
                f"spec fields the API cannot set: {', '.join(extra)} "
                "(apply such a manifest with kubectl)"
            )
        meta = doc.get("metadata") or {}
        name = spec.get("sessionName") or meta.get("name")
        body = {"config": spec["config"], "session_name": name, "tags": spec.get("tags")}
        # The CR's camelCase spec, as the create body's snake_case fields.
        body["resources"] = spec.get("resources")
        body["node_selector"] = spec.get("nodeSelector")
        tolerations = spec.get("tolerations")
        if isinstance(tolerations, list):
            tolerations = [
                {_snake(k): v for k, v in t.items()} if isinstance(t, dict) else t
                for t in tolerations
            ]
        body["tolerations"] = tolerations
        body["replicas"] = spec.get("replicas")
        body = {k: v for k, v in body.items() if v is not None}
        # Like `kubectl apply`, a manifest without `suspend: true` runs at once.
        return body, spec.get("suspend") is not True
    unknown = sorted(set(doc) - _BODY_FIELDS)
    if unknown:
        raise UsageError(f"unknown fields for a create body: {', '.join(unknown)}")
    return {k: v for k, v in doc.items() if k in _BODY_FIELDS}, False


def cmd_apply(args: argparse.Namespace, p: Printer) -> int:
    raw = sys.stdin.read() if args.file == "-" else None
    docs = [d for d in load_yaml_all(args.file, raw) if d is not None]
    if not docs:
        raise UsageError(f"{args.file} holds no document")
    plans = [body_from_document(d) for d in docs]  # all checked before anything is created
    results = []
    with connect(args) as client:
        for body, start in plans:
            result = create(client, body, start=start or args.start)
            results.append(result)
            if p.fmt == "table":
                status = result["status"]
                p.out.write(f"session {result['session_id']} {p.paint(status, status)}\n")
    if p.fmt != "table":
        p.data(results[0] if len(results) == 1 else results)
    return EXIT_OK
