"""`pivot metrics SESSION`."""

from __future__ import annotations

import argparse

from pivot_client.cli.common import Commands, connect
from pivot_client.cli.exits import EXIT_OK
from pivot_client.cli.output import Printer


def register(commands: Commands) -> None:
    cmd = commands.add("metrics", "a session's epoch metrics", cmd_metrics)
    cmd.add_argument("session")
    cmd.add_argument("--metric", help="only this metric")
    cmd.add_argument("--limit", type=int, help="the latest N epochs")


def cmd_metrics(args: argparse.Namespace, p: Printer) -> int:
    with connect(args) as client:
        result = client.get_metrics(args.session, metric_name=args.metric, limit=args.limit)
    rows = [r.to_dict() for r in result.metrics]
    # Whatever metrics the session logged are columns; the timestamp is left to -o json.
    columns = list(dict.fromkeys(k for r in rows for k in r if k != "timestamp"))
    p.emit(result.to_dict(), rows, columns or ("epoch",))
    return EXIT_OK
