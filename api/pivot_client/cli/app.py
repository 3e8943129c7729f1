"""The root of the `pivot` command: the parser with the options every API command takes,
the command modules it is built from, and how errors become messages and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

from pivot_client import APIConnectionError, APIStatusError, PIVOTClient, PIVOTError
from pivot_client.cli import (
    account,
    alerts,
    apply,
    checkpoints,
    metrics,
    models,
    notifications,
    sessions,
    up,
    webhooks,
)
from pivot_client.cli.common import Commands
from pivot_client.cli.exits import (
    EXIT_BROKEN_PIPE,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    exit_code_for,
)
from pivot_client.cli.output import Printer, escape

# Each registers its commands; `pivot --help` lists them in this order.
COMMAND_MODULES = (
    up,
    sessions,
    metrics,
    checkpoints,
    alerts,
    notifications,
    webhooks,
    apply,
    account,
    models,
)

# The path PIVOTClient.base_url ends with (added to a --url without it); a connection error
# names the address without it, as the user gives it.
_API_PATH = "/api/v1"


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pivot",
        description="PIVOT training platform",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_api_options(defaults=True)],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = Commands(sub, _api_options(defaults=False))
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


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
    args = build_parser().parse_args(argv)
    if "standalone" in args:  # `pivot up`: not an API command, so none of the below
        return int(args.standalone(args))
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
        url = _api_address(args.url)
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


def _api_address(url: str | None) -> str:
    """Where the client looked for the API (--url, else PIVOT_URL, else its default)."""
    with PIVOTClient(url) as client:
        return client.base_url.removesuffix(_API_PATH)
