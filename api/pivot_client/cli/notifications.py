"""`pivot notifications`."""

from __future__ import annotations

from pivot_client.cli.common import Commands, shows

NOTIFICATION_COLUMNS = ("id", "type", "priority", "read", "message", "created_at")


def register(commands: Commands) -> None:
    listing = shows(
        lambda client, args: client.notifications.list(
            type=args.type, priority=args.priority, unread=True if args.unread else None
        ),
        lambda answer: answer.notifications,
        NOTIFICATION_COLUMNS,
    )
    cmd = commands.add("notifications", "notifications", listing)
    cmd.add_argument("--type", choices=("training", "alert", "system"))
    cmd.add_argument("--priority", choices=("low", "medium", "high"))
    cmd.add_argument("--unread", action="store_true", help="unread ones only")
