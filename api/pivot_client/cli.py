"""The `pivot` command.

    pivot up                                   run the whole platform on this machine
    pivot sessions list|get|create|start|stop|watch
    pivot metrics SESSION                      epoch records (table, json or yaml)
    pivot checkpoints list|download|upload|delete
    pivot alerts                               alerts (--status, --severity, --session)
    pivot ack ALERT --by WHO                   acknowledge an alert
    pivot rules                                alert rules
    pivot notifications                        notifications (--type, --priority, --unread)
    pivot apply -f session.yaml                create a session from a manifest or a create body

The API is `--url` or PIVOT_URL (default http://localhost:8000); `--api-key` or PIVOT_API_KEY
is sent as a bearer token. `-o json|yaml` prints what the API answered, for scripts. These
options go before the command or after it (`pivot --url U sessions list`, `pivot sessions list
--url U`). Tables escape control characters that strings from the server may hold (`\n`,
`\x00`, `\u202e`...), so that no name can rewrite the terminal. Output into a pipe that
closes early (`pivot sessions list | head`) ends quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

import yaml

from pivot_client._base import API_PREFIX, base_url_from
from pivot_client._exceptions import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    PIVOTError,
    RateLimitError,
    ValidationError,
)
from pivot_client.types import FINAL_STATUSES, PIVOTModel

# Exit codes: a script can tell what went wrong without parsing messages.
EXIT_OK = 0
EXIT_API_ERROR = 1  # the API answered with an error not listed below, or a 5xx
EXIT_USAGE = 2  # bad command line or input file (argparse uses 2 as well)
EXIT_NOT_FOUND = 3  # 404
EXIT_CONFLICT = 4  # 409: e.g. starting a session that is already running
EXIT_INVALID = 5  # 400 / 422: the API refused the request as invalid
EXIT_AUTH = 6  # 401 / 403
EXIT_RATE_LIMITED = 7  # 429 after the client's retries
EXIT_UNREACHABLE = 8  # no answer: connection refused, timeout, broken stream
EXIT_TRAINING_FAILED = 9  # `sessions watch`: the session failed or was stopped
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # stdout closed early (`| head`): 128 + SIGPIPE, as a shell reports

EXIT_CODES_HELP = """exit codes:
  0 ok              1 API error          2 usage / bad input   3 not found
  4 conflict        5 invalid request    6 unauthorized        7 rate limited
  8 API unreachable 9 training failed or stopped (sessions watch)   130 interrupted
  141 output pipe closed (e.g. | head)"""

_ERROR_EXITS: list[tuple[type[PIVOTError], int]] = [
    (NotFoundError, EXIT_NOT_FOUND),
    (ConflictError, EXIT_CONFLICT),
    (ValidationError, EXIT_INVALID),
    (BadRequestError, EXIT_INVALID),
    (AuthenticationError, EXIT_AUTH),
    (PermissionDeniedError, EXIT_AUTH),
    (RateLimitError, EXIT_RATE_LIMITED),
    (APIConnectionError, EXIT_UNREACHABLE),
]


class UsageError(Exception):
    """Bad input that argparse could not catch (a manifest, a JSON argument)."""


def exit_code_for(exc: PIVOTError) -> int:
    for cls, code in _ERROR_EXITS:
        if isinstance(exc, cls):
            return code
    return EXIT_API_ERROR


# -- output ---------------------------------------------------------------------------------


class Printer:
    def __init__(self, fmt: str, out: IO[str] = sys.stdout) -> None:
        self.fmt = fmt
        self.out = out
        # Colour only for a terminal that has not asked for none (no-color.org).
        self.colour = out.isatty() and not os.environ.get("NO_COLOR") and fmt == "table"

    def paint(self, text: str, status: str) -> str:
        codes = {"completed": "32", "running": "36", "failed": "31", "stopped": "33"}
        code = codes.get(status)
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text

    def data(self, value: Any) -> None:
        if self.fmt == "json":
            json.dump(value, self.out, indent=2, sort_keys=False)
            self.out.write("\n")
        else:
            yaml.safe_dump(value, self.out, sort_keys=False)

    def emit(
        self,
        value: Any,
        rows: Iterable[Mapping[str, Any]] | None = None,
        columns: Sequence[str] = (),
    ) -> None:
        """`value` as JSON/YAML, or `rows` as a table (key: value lines when no rows)."""
        if self.fmt != "table":
            self.data(value)
        elif rows is not None:
            self.table(list(rows), columns)
        else:
            for key, item in (value or {}).items():
                # JSON text escapes control characters itself (and all of non-ASCII).
                shown = json.dumps(item) if isinstance(item, dict | list) else escape(str(item))
                self.out.write(f"{escape(str(key))}: {shown}\n")

    def table(self, rows: list[Mapping[str, Any]], columns: Sequence[str]) -> None:
        if not columns:
            columns = list(dict.fromkeys(k for row in rows for k in row))
        cells = [[fmt_cell(row.get(c)) for c in columns] for row in rows]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        self.out.write(
            "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
        )
        self.out.write("\n")
        for row, raw in zip(cells, rows, strict=True):
            line = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            self.out.write(self.paint(line, str(raw.get("status", ""))) + "\n")


def fmt_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return escape(",".join(str(v) for v in value)) or "-"
    return escape(str(value))


# Characters a terminal acts on or that reorder what it shows, as C-style escapes.
_ESCAPES = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f"}
_ESCAPES |= {"\r": "\\r", "\\": "\\\\"}


def escape(text: str) -> str:
    """`text` safe to print on a terminal: control characters (C0, DEL, C1), format
    characters (bidi overrides such as U+202E, zero-width ones) and line or paragraph
    separators become escapes (`\\n`, `\\x00`, `\\u202e`); a backslash is doubled so that
    an escape cannot be forged. Text without any of them comes back as it was."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def dump(model: PIVOTModel | Sequence[PIVOTModel]) -> Any:
    if isinstance(model, PIVOTModel):
        return model.to_dict()
    return [m.to_dict() for m in model]


# -- commands -------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from pivot_client import PIVOTClient

    return PIVOTClient(args.url, api_key=args.api_key, max_retries=args.retries)


SESSION_COLUMNS = ("session_id", "session_name", "status", "current_epoch", "total_epochs")


def cmd_sessions_list(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        sessions = list(client.list_sessions(status=args.status))
    if args.limit is not None:
        sessions = sessions[: args.limit]
    rows = [s.to_dict() for s in sessions]
    for row in rows:
        row["age"] = age(row.get("created_at"))
    p.emit(dump(sessions), rows, (*SESSION_COLUMNS, "age"))
    return EXIT_OK


def cmd_sessions_get(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        session = client.get_session(args.session)
    p.emit(session.to_dict())
    return EXIT_OK


def cmd_sessions_create(args: argparse.Namespace, p: Printer) -> int:
    body: dict[str, Any] = {"session_name": args.name, "tags": args.tag or None}
    if args.config_file:
        body["config"] = load_yaml(args.config_file)
    else:
        body["config_path"] = args.config_path
    body.update(placement(args))
    return create(args, p, body)


_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


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


def create(args: argparse.Namespace, p: Printer, body: dict[str, Any]) -> int:
    with _client(args) as client:
        created = client.create_session(**body)
        result: dict[str, Any] = created.to_dict()
        if args.start:
            started = client.start_training(created.session_id)
            result.update(status=started.status, started_at=started.started_at)
    if p.fmt == "table":
        p.out.write(f"{result['session_id']} {p.paint(result['status'], result['status'])}\n")
    else:
        p.data(result)
    return EXIT_OK


def cmd_sessions_start(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        p.emit(client.start_training(args.session).to_dict())
    return EXIT_OK


def cmd_sessions_stop(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        p.emit(client.stop_training(args.session).to_dict())
    return EXIT_OK


def cmd_sessions_watch(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
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


class Progress:
    """`sessions watch`: a bar redrawn in place on a terminal, one line per epoch elsewhere
    (logs and pipes should not fill up with carriage returns)."""

    WIDTH = 30

    def __init__(self, p: Printer, *, total: int, start_epoch: int = 0) -> None:
        self.p = p
        self.total = max(total, 1)
        self.live = p.out.isatty() and p.fmt == "table"
        self.started = time.monotonic()
        self.first_epoch = start_epoch
        self.epoch = start_epoch
        self.drawn = False  # a bar is on the terminal's current line

    def eta(self) -> str:
        done = self.epoch - self.first_epoch
        if done <= 0 or self.epoch >= self.total:
            return "-"
        seconds = (time.monotonic() - self.started) / done * (self.total - self.epoch)
        return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"

    def update(self, record: Mapping[str, Any]) -> None:
        self.epoch = int(record.get("epoch") or self.epoch)
        if self.p.fmt != "table":
            self.p.out.write(json.dumps(dict(record)) + "\n")
            self.p.out.flush()
            return
        values = " ".join(
            f"{escape(k)}={v:.4g}"
            for k, v in record.items()
            # `loss` is one of the others again (val_loss, mostly): shown once.
            if k not in ("epoch", "timestamp", "loss") and isinstance(v, int | float)
        )
        filled = int(self.WIDTH * min(self.epoch, self.total) / self.total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"epoch {self.epoch}/{self.total} [{bar}] ETA {self.eta()}  {values}"
        if self.live:
            self.p.out.write("\r\x1b[2K" + line)
            self.drawn = True
        else:
            self.p.out.write(line + "\n")
        self.p.out.flush()

    def status(self, status: str) -> None:
        if self.p.fmt == "table" and not self.live and status not in FINAL_STATUSES:
            self.p.out.write(f"status {escape(status)}\n")

    def finish(self, status: str, message: str | None, latest: Mapping[str, Any]) -> None:
        if self.p.fmt != "table":
            return
        if self.drawn:
            self.p.out.write("\n")
        reason = f": {escape(message)}" if message and status != "completed" else ""
        metrics = " ".join(f"{escape(k)}={v:.4g}" for k, v in latest.items())
        shown = self.p.paint(escape(status), status)
        self.p.out.write(f"{shown}{reason}  {metrics}".rstrip() + "\n")


def cmd_metrics(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        result = client.get_metrics(args.session, metric_name=args.metric, limit=args.limit)
    rows = [r.to_dict() for r in result.metrics]
    columns = list(dict.fromkeys(k for r in rows for k in r if k != "timestamp"))
    p.emit(result.to_dict(), rows, columns or ("epoch",))
    return EXIT_OK


CHECKPOINT_COLUMNS = (
    "checkpoint_id",
    "session_id",
    "epoch",
    "metric_name",
    "metric_value",
    "file_size_mb",
    "is_best",
)


def cmd_checkpoints_list(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        result = client.checkpoints.list(session_id=args.session, limit=args.limit)
    p.emit(result.to_dict(), [c.to_dict() for c in result.checkpoints], CHECKPOINT_COLUMNS)
    return EXIT_OK


def _progress_to_stderr(label: str) -> Callable[[int, int], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        pct = 100 * done / total if total else 100
        sys.stderr.write(f"\r{label} {done / 1e6:.1f}/{total / 1e6:.1f} MB ({pct:.0f}%)")
        if done >= total:
            sys.stderr.write("\n")

    return show


def cmd_checkpoints_download(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        path = client.checkpoints.download(
            args.checkpoint, args.output_path, on_progress=_progress_to_stderr("download")
        )
    result = {"checkpoint_id": args.checkpoint, "path": str(path)}
    p.emit(result) if p.fmt != "table" else p.out.write(f"{path}\n")
    return EXIT_OK


def cmd_checkpoints_upload(args: argparse.Namespace, p: Printer) -> int:
    metrics = None
    if args.metrics:
        try:
            metrics = json.loads(args.metrics)
        except ValueError as exc:
            raise UsageError(f"--metrics is not JSON: {exc}") from exc
    if not os.path.isfile(args.file):
        raise UsageError(f"no such file: {args.file}")
    with _client(args) as client:
        result = client.checkpoints.upload(
            args.file,
            session_id=args.session,
            epoch=args.epoch,
            metrics=metrics,
            on_progress=_progress_to_stderr("upload"),
        )
    p.emit(result.to_dict())
    return EXIT_OK


def cmd_checkpoints_delete(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        p.emit(client.checkpoints.delete(args.checkpoint).to_dict())
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        try:
            result = client.alerts.list(
                status=args.status, severity=args.severity, session_id=args.session
            )
        except NotFoundError as exc:
            # The only 404 /alerts can give is for the route itself.
            raise NotFoundError(
                f"this API does not serve alerts ({client.base_url}/alerts)",
                response=exc.response,
                code=exc.code,
            ) from exc
    columns = ("alert_id", "severity", "status", "rule_name", "message", "triggered_at")
    p.emit(result.to_dict(), [a.to_dict() for a in result.alerts], columns)
    return EXIT_OK


def cmd_ack(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        alert = client.alerts.acknowledge(args.alert, acknowledged_by=args.by, notes=args.notes)
    p.emit(alert.to_dict())
    return EXIT_OK


def cmd_rules(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        result = client.alerts.list_rules()
    columns = ("rule_id", "name", "metric", "condition", "threshold", "severity", "enabled")
    p.emit(result.to_dict(), [r.to_dict() for r in result.rules], columns)
    return EXIT_OK


def cmd_notifications(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        result = client.notifications.list(
            type=args.type, priority=args.priority, unread=True if args.unread else None
        )
    columns = ("id", "type", "priority", "read", "message", "created_at")
    p.emit(result.to_dict(), [n.to_dict() for n in result.notifications], columns)
    return EXIT_OK


_WEBHOOK_COLUMNS = ("webhook_id", "url", "events", "status", "created_at")


def cmd_webhooks_list(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        result = client.webhooks.list()
    p.emit(result.to_dict(), [w.to_dict() for w in result.webhooks], _WEBHOOK_COLUMNS)
    return EXIT_OK


def cmd_webhooks_get(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        p.emit(client.webhooks.get(args.webhook).to_dict())
    return EXIT_OK


def cmd_webhooks_create(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        hook = client.webhooks.create(url=args.target, events=args.event, secret=args.secret)
    p.emit(hook.to_dict())
    if hook.secret:
        print("the signing secret is shown this once: keep it", file=sys.stderr)
    return EXIT_OK


def cmd_webhooks_delete(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        p.emit(client.webhooks.delete(args.webhook).to_dict())
    return EXIT_OK


def cmd_webhooks_test(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        result = client.webhooks.test(args.webhook)
    p.emit(result.to_dict())
    return EXIT_OK if result.success else EXIT_API_ERROR  # the receiver did not take it


def cmd_webhooks_deliveries(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        result = client.webhooks.deliveries(args.webhook, limit=args.limit)
    columns = ("attempted_at", "event_id", "type", "attempt", "outcome", "status_code", "error")
    p.emit(result.to_dict(), [d.to_dict() for d in result.deliveries], columns)
    return EXIT_OK


def cmd_webhooks_dead_letters(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        result = client.webhooks.dead_letters(args.webhook)
    columns = ("event_id", "type", "attempts", "last_status_code", "last_error", "dead_lettered_at")
    p.emit(result.to_dict(), [d.to_dict() for d in result.dead_letters], columns)
    return EXIT_OK


def cmd_webhooks_redeliver(args: argparse.Namespace, p: Printer) -> int:
    with _client(args) as client:
        p.emit(client.webhooks.redeliver(args.webhook, event_id=args.event).to_dict())
    return EXIT_OK


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
    with _client(args) as client:
        for body, start in plans:
            created = client.create_session(**body)
            result = created.to_dict()
            if start or args.start:
                started = client.start_training(created.session_id)
                result.update(status=started.status, started_at=started.started_at)
            results.append(result)
            if p.fmt == "table":
                status = result["status"]
                p.out.write(f"session {result['session_id']} {p.paint(status, status)}\n")
    if p.fmt != "table":
        p.data(results[0] if len(results) == 1 else results)
    return EXIT_OK


# -- helpers --------------------------------------------------------------------------------


def load_yaml(path: str) -> dict[str, Any]:
    docs = load_yaml_all(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise UsageError(f"{path} must hold one mapping")
    return docs[0]


def load_yaml_all(path: str, text: str | None = None) -> list[Any]:
    try:
        if text is None:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        return list(yaml.safe_load_all(text))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML: {exc}") from exc


def age(created_at: str | None) -> str:
    if not created_at:
        return "-"
    from datetime import UTC, datetime

    try:
        then = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    seconds = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


# -- parser ---------------------------------------------------------------------------------


def _api_options(*, defaults: bool) -> argparse.ArgumentParser:
    """The options every API command takes, before the command (`pivot --url U sessions
    list`: the top-level parser's, with the defaults) or after it (each command's, which
    set nothing unless given, so that they do not undo what came before)."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=default(os.environ.get("PIVOT_URL")), help="API URL (env PIVOT_URL)"
    )
    common.add_argument(
        "--api-key",
        default=default(os.environ.get("PIVOT_API_KEY")),
        help="API key (env PIVOT_API_KEY)",
    )
    common.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "yaml"),
        default=default("table"),
        help="format",
    )
    common.add_argument("--retries", type=int, default=default(2), help=argparse.SUPPRESS)
    return common


def build_parser() -> tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(
        prog="pivot",
        description="PIVOT training platform",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_api_options(defaults=True)],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="run the whole platform on this machine")
    try:
        from pivot_local import up as local_up
    except ImportError:  # the 'local' extra is not installed
        local_up = None
    if local_up is not None:
        local_up.add_arguments(up)

    api = _api_options(defaults=False)

    def command(
        group: Any, name: str, handler: Callable[..., int], help_text: str
    ) -> argparse.ArgumentParser:
        cmd: argparse.ArgumentParser = group.add_parser(name, parents=[api], help=help_text)
        cmd.set_defaults(handler=handler)
        return cmd

    sessions = sub.add_parser("sessions", help="training sessions").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    cmd = command(sessions, "list", cmd_sessions_list, "list sessions (all pages)")
    cmd.add_argument("--status", help="only sessions in this status")
    cmd.add_argument("--limit", type=int, help="show at most this many")
    command(sessions, "get", cmd_sessions_get, "show one session").add_argument("session")
    cmd = command(sessions, "create", cmd_sessions_create, "create a session")
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
    command(sessions, "start", cmd_sessions_start, "start training").add_argument("session")
    command(sessions, "stop", cmd_sessions_stop, "stop training").add_argument("session")
    cmd = command(sessions, "watch", cmd_sessions_watch, "follow a session until it ends")
    cmd.add_argument("session")

    cmd = command(sub, "metrics", cmd_metrics, "a session's epoch metrics")
    cmd.add_argument("session")
    cmd.add_argument("--metric", help="only this metric")
    cmd.add_argument("--limit", type=int, help="the latest N epochs")

    ckpts = sub.add_parser("checkpoints", help="model checkpoints").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    cmd = command(ckpts, "list", cmd_checkpoints_list, "list checkpoints")
    cmd.add_argument("--session", help="only this session's")
    cmd.add_argument("--limit", type=int)
    cmd = command(ckpts, "download", cmd_checkpoints_download, "download a checkpoint")
    cmd.add_argument("checkpoint")
    cmd.add_argument("output_path", nargs="?", default=".", help="file or directory (default .)")
    cmd = command(ckpts, "upload", cmd_checkpoints_upload, "upload a checkpoint file")
    cmd.add_argument("file")
    cmd.add_argument("--session", required=True)
    cmd.add_argument("--epoch", type=int, required=True)
    cmd.add_argument("--metrics", help="JSON object, e.g. '{\"val_loss\": 0.3}'")
    cmd = command(ckpts, "delete", cmd_checkpoints_delete, "delete a checkpoint")
    cmd.add_argument("checkpoint")

    cmd = command(sub, "alerts", cmd_alerts, "alerts")
    cmd.add_argument("--status", choices=("active", "acknowledged", "resolved"))
    cmd.add_argument("--severity", choices=("low", "medium", "high", "critical"))
    cmd.add_argument("--session", help="only this session's")
    cmd = command(sub, "ack", cmd_ack, "acknowledge an alert")
    cmd.add_argument("alert")
    cmd.add_argument("--by", required=True, help="who is on it")
    cmd.add_argument("--notes")
    command(sub, "rules", cmd_rules, "alert rules")
    cmd = command(sub, "notifications", cmd_notifications, "notifications")
    cmd.add_argument("--type", choices=("training", "alert", "system"))
    cmd.add_argument("--priority", choices=("low", "medium", "high"))
    cmd.add_argument("--unread", action="store_true", help="unread ones only")

    hooks = sub.add_parser("webhooks", help="webhooks").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    command(hooks, "list", cmd_webhooks_list, "list webhooks")
    command(hooks, "get", cmd_webhooks_get, "show one webhook").add_argument("webhook")
    cmd = command(hooks, "create", cmd_webhooks_create, "register a webhook")
    cmd.add_argument("target", metavar="URL", help="where events are POSTed")
    cmd.add_argument(
        "--event", action="append", required=True, help="an event type or * (repeatable)"
    )
    cmd.add_argument("--secret", help="signing secret (default: one is generated and shown)")
    command(hooks, "delete", cmd_webhooks_delete, "remove a webhook").add_argument("webhook")
    cmd = command(hooks, "test", cmd_webhooks_test, "send a signed test event")
    cmd.add_argument("webhook")
    cmd = command(hooks, "deliveries", cmd_webhooks_deliveries, "the delivery log")
    cmd.add_argument("webhook")
    cmd.add_argument("--limit", type=int)
    cmd = command(hooks, "dead-letters", cmd_webhooks_dead_letters, "undeliverable events")
    cmd.add_argument("webhook")
    cmd = command(hooks, "redeliver", cmd_webhooks_redeliver, "queue dead letters again")
    cmd.add_argument("webhook")
    cmd.add_argument("--event", help="only this event id (default: all)")

    cmd = command(sub, "apply", cmd_apply, "create sessions from a YAML file")
    cmd.add_argument("-f", "--file", required=True, help="TrainingSession manifest(s) or body")
    cmd.add_argument("--start", action="store_true", help="start what is created")
    return parser, local_up


def stdout_gone() -> None:
    """Whoever read stdout has gone (`pivot ... | head`): send what is still to be written
    to /dev/null, so that neither later writes nor the flush at exit raise BrokenPipeError."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
        return code
    except BrokenPipeError:
        # As Unix tools do: stop quietly. (Not SIGPIPE's default action, which would also
        # kill the process on a write to a closed socket.)
        stdout_gone()
        return EXIT_BROKEN_PIPE


def _main(argv: list[str] | None) -> int:
    parser, local_up = build_parser()
    args = parser.parse_args(argv)
    if args.command == "up":
        if local_up is None:
            print("pivot up needs the local extra: pip install 'pivot[local]'", file=sys.stderr)
            return EXIT_USAGE
        return int(local_up.main(args))
    printer = Printer(args.output)
    try:
        return int(args.handler(args, printer))
    except UsageError as exc:
        print(f"pivot: {escape(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except APIStatusError as exc:
        print(f"pivot: {escape(exc.message)} ({exc.status_code} {exc.code})", file=sys.stderr)
        return exit_code_for(exc)
    except APIConnectionError as exc:
        message = exc.message
        url = base_url_from(args.url).removesuffix(API_PREFIX)
        if url not in message:
            message += f" (API at {url})"
        print(f"pivot: {escape(message)}", file=sys.stderr)
        print("pivot: is the API running there? set --url or PIVOT_URL", file=sys.stderr)
        return exit_code_for(exc)
    except PIVOTError as exc:
        print(f"pivot: {escape(exc.message)}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
