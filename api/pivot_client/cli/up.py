"""`pivot up`: the whole platform on this machine (the `local` extra, pivot_local)."""

from __future__ import annotations

import argparse
import sys

from pivot_client.cli.common import Commands
from pivot_client.cli.exits import EXIT_USAGE


def register(commands: Commands) -> None:
    # Not an API command: no API options, and its output and errors are its own (`standalone`).
    cmd = commands.sub.add_parser("up", help="run the whole platform on this machine")
    try:
        # Imported here, not at the top: pivot_local.up imports pivot_client.cli itself.
        from pivot_local import up as local_up
    except ImportError:  # the 'local' extra is not installed
        cmd.set_defaults(standalone=_needs_local)
        return
    local_up.add_arguments(cmd)
    cmd.set_defaults(standalone=lambda args: int(local_up.main(args)))


def _needs_local(args: argparse.Namespace) -> int:
    print("pivot up needs the local extra: pip install 'pivot[local]'", file=sys.stderr)
    return EXIT_USAGE
