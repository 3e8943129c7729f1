"""`pivot webhooks list|get|create|delete|test|deliveries|dead-letters|redeliver`."""

from __future__ import annotations

import argparse
import sys

from pivot_client.cli.common import Commands, connect, shows
from pivot_client.cli.exits import EXIT_API_ERROR, EXIT_OK
from pivot_client.cli.output import Printer

WEBHOOK_COLUMNS = ("webhook_id", "url", "events", "status", "created_at")
DELIVERY_COLUMNS = (
    *("attempted_at", "event_id", "type", "attempt"),
    *("outcome", "status_code", "error"),
)
DEAD_LETTER_COLUMNS = (
    *("event_id", "type", "attempts"),
    *("last_status_code", "last_error", "dead_lettered_at"),
)


def register(commands: Commands) -> None:
    hooks = commands.group("webhooks", "webhooks")
    listing = shows(lambda c, _: c.webhooks.list(), lambda a: a.webhooks, WEBHOOK_COLUMNS)
    hooks.add("list", "list webhooks", listing)
    get = shows(lambda client, args: client.webhooks.get(args.webhook))
    hooks.add("get", "show one webhook", get).add_argument("webhook")
    cmd = hooks.add("create", "register a webhook", cmd_create)
    cmd.add_argument("target", metavar="URL", help="where events are POSTed")
    cmd.add_argument(
        "--event", action="append", required=True, help="an event type or * (repeatable)"
    )
    cmd.add_argument("--secret", help="signing secret (default: one is generated and shown)")
    delete = shows(lambda client, args: client.webhooks.delete(args.webhook))
    hooks.add("delete", "remove a webhook", delete).add_argument("webhook")
    hooks.add("test", "send a signed test event", cmd_test).add_argument("webhook")
    deliveries = shows(
        lambda client, args: client.webhooks.deliveries(args.webhook, limit=args.limit),
        lambda answer: answer.deliveries,
        DELIVERY_COLUMNS,
    )
    cmd = hooks.add("deliveries", "the delivery log", deliveries)
    cmd.add_argument("webhook")
    cmd.add_argument("--limit", type=int)
    dead_letters = shows(
        lambda client, args: client.webhooks.dead_letters(args.webhook),
        lambda answer: answer.dead_letters,
        DEAD_LETTER_COLUMNS,
    )
    hooks.add("dead-letters", "undeliverable events", dead_letters).add_argument("webhook")
    redeliver = shows(
        lambda client, args: client.webhooks.redeliver(args.webhook, event_id=args.event)
    )
    cmd = hooks.add("redeliver", "queue dead letters again", redeliver)
    cmd.add_argument("webhook")
    cmd.add_argument("--event", help="only this event id (default: all)")


def cmd_create(args: argparse.Namespace, p: Printer) -> int:
    with connect(args) as client:
        hook = client.webhooks.create(url=args.target, events=args.event, secret=args.secret)
    p.emit(hook.to_dict())
    if hook.secret:
        print("the signing secret is shown this once: keep it", file=sys.stderr)
    return EXIT_OK


def cmd_test(args: argparse.Namespace, p: Printer) -> int:
    with connect(args) as client:
        result = client.webhooks.test(args.webhook)
    p.emit(result.to_dict())
    return EXIT_OK if result.success else EXIT_API_ERROR  # the receiver did not take it
