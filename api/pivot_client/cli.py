"""The `pivot` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pivot", description="PIVOT training platform")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole platform on this machine")
    try:
        from pivot_local import up as local_up
    except ImportError:  # the 'local' extra is not installed
        local_up = None  # type: ignore[assignment]
    if local_up is not None:
        local_up.add_arguments(up)
    args = parser.parse_args(argv)
    if args.command == "up":
        if local_up is None:
            print("pivot up needs the local extra: pip install 'pivot[local]'", file=sys.stderr)
            return 2
        return local_up.main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
