"""`pivot alerts`, `pivot ack ALERT --by WHO` and `pivot rules`."""

from __future__ import annotations

import argparse

from pivot_client import NotFoundError
from pivot_client.cli.common import Commands, connect, shows
from pivot_client.cli.exits import EXIT_OK
from pivot_client.cli.output import Printer

ALERT_COLUMNS = ("alert_id", "severity", "status", "rule_name", "message", "triggered_at")
RULE_COLUMNS = ("rule_id", "name", "metric", "condition", "threshold", "severity", "enabled")


def register(commands: Commands) -> None:
    cmd = commands.add("alerts", "alerts", cmd_alerts)
    cmd.add_argument("--status", choices=("active", "acknowledged", "resolved"))
    cmd.add_argument("--severity", choices=("low", "medium", "high", "critical"))
    cmd.add_argument("--session", help="only this session's")
    ack = shows(
        lambda client, args: client.alerts.acknowledge(
            args.alert, acknowledged_by=args.by, notes=args.notes
        )
    )
    cmd = commands.add("ack", "acknowledge an alert", ack)
    cmd.add_argument("alert")
    cmd.add_argument("--by", required=True, help="who is on it")
    cmd.add_argument("--notes")
    rules = shows(lambda client, _: client.alerts.list_rules(), lambda a: a.rules, RULE_COLUMNS)
    commands.add("rules", "alert rules", rules)


def cmd_alerts(args: argparse.Namespace, p: Printer) -> int:
    with connect(args) as client:
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
    p.emit(result.to_dict(), [a.to_dict() for a in result.alerts], ALERT_COLUMNS)
    return EXIT_OK
