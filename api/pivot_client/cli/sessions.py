"""`pivot sessions list|get|create|start|stop|watch`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from pivot_client import PIVOTClient
from pivot_client.cli.common import Commands, connect, load_yaml, shows
from pivot_client.cli.exits import EXIT_OK, EXIT_TRAINING_FAILED, UsageError
from pivot_client.cli.output import Printer
from pivot_client.cli.progress import Progress

SESSION_COLUMNS = ("session_id", "session_name", "status", "current_epoch", "total_epochs")
EVENT_COLUMNS = ("last_timestamp", "type", "reason", "count", "message")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def register(commands: Commands) -> None:
    sessions = commands.group("sessions", "training sessions")
    cmd = sessions.add("list", "list sessions (all pages)", cmd_list)
    cmd.add_argument("--status", help="only sessions in this status")
    cmd.add_argument("--limit", type=int, help="show at most this many")
    get = shows(lambda client, args: client.get_session(args.session))
    sessions.add("get", "show one session", get).add_argument("session")
    cmd = sessions.add("create", "create a session", cmd_create)
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-path", help="a config file on the server (configs/…)")
    source.add_argument("-f", "--config-file", help="a local YAML config, sent inline")
    cmd.add_argument("--name", help="display name")
    cmd.add_argument("--tag", action="append", help="a tag (repeatable)")
    cmd.add_argument("--gpu", type=int, help="GPUs per pod (nvidia.com/gpu)")
    cmd.add_argument("--cpu", help="CPU per pod, a quantity (4, 500m)")
    cmd.add_argument("--memory", help="memory per pod, a quantity (16Gi)")
    cmd.add_argument("--replicas", type=int, help="pods of a distributed session")
    cmd.add_argument(
        "--node-selector", action="append", metavar="KEY=VALUE", help="a node label (repeatable)"
    )
    cmd.add_argument(
        "--toleration",
        action="append",
        metavar="KEY[=VALUE][:EFFECT]",
        help="a taint to tolerate, as kubectl taint writes it (repeatable)",
    )
    cmd.add_argument("--start", action="store_true", help="start it at once")
    start = shows(lambda client, args: client.start_training(args.session))
    sessions.add("start", "start training", start).add_argument("session")
    stop = shows(lambda client, args: client.stop_training(args.session))
    sessions.add("stop", "stop training", stop).add_argument("session")
    sessions.add("watch", "follow a session until it ends", cmd_watch).add_argument("session")
    cmd = sessions.add("logs", "the trainer's log (-f: as it is written)", cmd_logs)
    cmd.add_argument("session")
    cmd.add_argument("-f", "--follow", action="store_true", help="go on until the session ends")
    cmd.add_argument("--tail", type=int, help="only the last N lines")
    cmd.add_argument("--rank", default="0", help="the trainer of a multi-pod session, or all")
    events = shows(
        lambda client, args: client.session_events(args.session),
        rows=lambda answer: answer.events,
        columns=EVENT_COLUMNS,
    )
    sessions.add("events", "the session's Kubernetes Events", events).add_argument("session")


def cmd_list(args: argparse.Namespace, p: Printer) -> int:
    with connect(args) as client:
        sessions = list(client.list_sessions(status=args.status))
    if args.limit is not None:
        sessions = sessions[: args.limit]
    rows = [s.to_dict() for s in sessions]
    for row in rows:
        row["age"] = age(row.get("created_at"))
    p.emit([s.to_dict() for s in sessions], rows, (*SESSION_COLUMNS, "age"))
    return EXIT_OK


def cmd_create(args: argparse.Namespace, p: Printer) -> int:
    body: dict[str, Any] = {"session_name": args.name, "tags": args.tag or None}
    if args.config_file:
        body["config"] = load_yaml(args.config_file)
    else:
        body["config_path"] = args.config_path
    body.update(placement(args))
    with connect(args) as client:
        result = create(client, body, start=args.start)
    if p.fmt == "table":
        p.out.write(f"{result['session_id']} {p.paint(result['status'], result['status'])}\n")
    else:
        p.data(result)
    return EXIT_OK


def create(client: PIVOTClient, body: dict[str, Any], *, start: bool) -> dict[str, Any]:
    """Creates a session from a create body (and starts it): the API's answer, with the
    status that starting gave."""
    created = client.create_session(**body)
    result: dict[str, Any] = created.to_dict()
    if start:
        started = client.start_training(created.session_id)
        result.update(status=started.status, started_at=started.started_at)
    return result


def placement(args: argparse.Namespace) -> dict[str, Any]:
    """resources, node_selector, tolerations and replicas from `sessions create`'s flags (the
    server checks them as the CRD does: quantities, label syntax)."""
    asked = (("gpu", args.gpu), ("cpu", args.cpu), ("memory", args.memory))
    resources = {k: v for k, v in asked if v is not None}
    out: dict[str, Any] = {}
    if resources:
        out["resources"] = resources
    if args.node_selector:
        selector: dict[str, str] = {}
        for item in args.node_selector:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--node-selector takes KEY=VALUE, got {item!r}")
            selector[key] = value
        out["node_selector"] = selector
    if args.toleration:
        out["tolerations"] = [toleration(t) for t in args.toleration]
    if args.replicas is not None:
        out["replicas"] = args.replicas
    return out


def toleration(text: str) -> dict[str, Any]:
    """A toleration in kubectl taint's notation: KEY[=VALUE][:EFFECT] (Equal with a value,
    Exists without; every effect when none is named)."""
    spec, sep, effect = text.rpartition(":")
    if not sep:
        spec, effect = text, ""
    if effect and effect not in _EFFECTS:
        raise UsageError(
            f"--toleration: effect must be one of {', '.join(_EFFECTS)}, got {effect!r}"
        )
    key, has_value, value = spec.partition("=")
    out: dict[str, Any] = {"operator": "Equal" if has_value else "Exists"}
    if key:
        out["key"] = key
    if has_value:
        out["value"] = value
    if effect:
        out["effect"] = effect
    return out


def cmd_watch(args: argparse.Namespace, p: Printer) -> int:
    with connect(args) as client:
        session = client.get_session(args.session)
        view = Progress(p, total=session.total_epochs, start_epoch=session.current_epoch)
        if session.finished:
            view.finish(session.status, session.message, session.latest_metrics)
            return finished_code(session.status)
        final_event: dict[str, Any] = {}
        with client.stream_events(args.session) as events:
            for event in events:
                if event.event == "metrics":
                    view.update(event.data)
                elif event.event == "status":
                    view.status(str(event.data.get("status")))
                    final_event = event.data
        # The stream ends only once the session the API serves has finished, and reads never
        # go back, so the record is the outcome (with the last epoch's metrics); the event
        # is the fallback for a server that predates that rule.
        final = client.get_session(args.session)
        status = final.status if final.finished else str(final_event.get("status"))
        reason = final.message or final_event.get("message") or final_event.get("error")
        view.finish(status, reason, final.latest_metrics)
        return finished_code(status)


def finished_code(status: str) -> int:
    return EXIT_OK if status == "completed" else EXIT_TRAINING_FAILED


def age(created_at: str | None) -> str:
    if not created_at:
        return "-"
    try:
        then = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    seconds = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def cmd_logs(args: argparse.Namespace, p: Printer) -> int:
    """Log lines as they are, in every output format: they are the trainer's text."""
    with connect(args) as client:
        if not args.follow:
            p.out.write(client.logs(args.session, tail=args.tail, rank=args.rank))
            return EXIT_OK
        for line in client.follow_logs(args.session, tail=args.tail, rank=args.rank):
            p.out.write(line + "\n")
            p.out.flush()
    return EXIT_OK
