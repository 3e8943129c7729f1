"""`python -m pivot_trainer.serve`: configured by env (settings.py); a bad setting exits 2 with
one line, before torch is imported."""

from __future__ import annotations

import asyncio
import os
import sys

from pivot_trainer.serve.errors import EXIT_CONFIG
from pivot_trainer.serve.settings import ConfigError, read_settings


def main() -> int:
    try:
        settings = read_settings()
    except ConfigError as exc:
        print(f"pivot-serve: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # As the trainer: idle OpenMP threads sleep instead of spinning, so the event loop and the
    # inference thread do not fight a spinning team for the cores. Env overrides it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from pivot_trainer.serve.app import serve

    try:  # uvloop where installed: less event-loop CPU per request (package docstring)
        import uvloop
    except ImportError:
        return asyncio.run(serve(settings))
    return int(uvloop.run(serve(settings)))


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The answer is given and the port closed. A SIGTERM during loading leaves the load
    # running on the model thread, which interpreter shutdown would wait for: skip it.
    os._exit(code)
