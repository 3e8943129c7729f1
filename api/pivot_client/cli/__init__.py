"""The `pivot` command.

    pivot up                                   run the whole platform on this machine
    pivot sessions list|get|create|start|stop|watch|logs|events
    pivot metrics SESSION                      epoch records (table, json or yaml)
    pivot checkpoints list|download|upload|delete
    pivot alerts                               alerts (--status, --severity, --session)
    pivot ack ALERT --by WHO                   acknowledge an alert
    pivot rules                                alert rules
    pivot notifications                        notifications (--type, --priority, --unread)
    pivot webhooks list|get|create|delete|test|deliveries|dead-letters|redeliver
    pivot apply -f session.yaml                create a session from a manifest or a create body
    pivot configs                              training configs on the server
    pivot whoami                               the API key's name and scope
    pivot models deploy|list|get|update|delete serve a checkpoint (model servers)
    pivot predict NAME IMAGE...                find lesions with a served model

The API is `--url` or PIVOT_URL (default http://localhost:8000); `--api-key` or PIVOT_API_KEY
is sent as a bearer token. `-o json|yaml` prints what the API answered, for scripts. These
options go before the command or after it (`pivot --url U sessions list`, `pivot sessions list
--url U`). Tables escape control characters that strings from the server may hold (`\\n`,
`\\x00`, `\\u202e`...), so that no name can rewrite the terminal. Output into a pipe that
closes early (`pivot sessions list | head`) ends quietly.

One module per command group (sessions.py, webhooks.py...), each with a `register(commands)`
that adds its commands; app.py lists the modules and holds the root parser and `main`.
"""

from pivot_client.cli.app import build_parser, main, stdout_gone
from pivot_client.cli.apply import body_from_document
from pivot_client.cli.exits import (
    EXIT_API_ERROR,
    EXIT_AUTH,
    EXIT_BROKEN_PIPE,
    EXIT_CONFLICT,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_RATE_LIMITED,
    EXIT_TRAINING_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
    exit_code_for,
)
from pivot_client.cli.output import Printer, escape
from pivot_client.cli.progress import Progress

__all__ = [
    "EXIT_API_ERROR",
    "EXIT_AUTH",
    "EXIT_BROKEN_PIPE",
    "EXIT_CONFLICT",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_RATE_LIMITED",
    "EXIT_TRAINING_FAILED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Printer",
    "Progress",
    "UsageError",
    "body_from_document",
    "build_parser",
    "escape",
    "exit_code_for",
    "main",
    "stdout_gone",
]
