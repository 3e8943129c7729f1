"""`pivot configs` and `pivot whoami`: what the server offers, and who this key is there."""

from __future__ import annotations

import argparse

from pivot_client.cli.common import Commands, connect, shows
from pivot_client.cli.exits import EXIT_OK
from pivot_client.cli.output import Printer


def register(commands: Commands) -> None:
    commands.add("configs", "training configs on the server (config_path)", cmd_configs)
    commands.add("whoami", "the API key's name and scope", shows(lambda c, _a: c.whoami()))


def cmd_configs(args: argparse.Namespace, p: Printer) -> int:
    with connect(args) as client:
        answer = client.configs()
    rows = [
        {
            "config_path": c.config_path,
            "epochs": (c.config or {}).get("epochs"),
            "batch_size": (c.config or {}).get("batch_size"),
            "error": c.error,
        }
        for c in answer.configs
    ]
    p.emit(answer.to_dict(), rows, ("config_path", "epochs", "batch_size", "error"))
    return EXIT_OK
