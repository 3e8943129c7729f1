"""What the command modules share: how a module adds its commands, the client a command
talks through, and reading YAML input."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import yaml

from pivot_client import PIVOTClient
from pivot_client.cli.exits import EXIT_OK, UsageError
from pivot_client.cli.output import Printer
from pivot_client.types import PIVOTModel

Handler = Callable[[argparse.Namespace, Printer], int]
M = TypeVar("M", bound=PIVOTModel)


class Commands:
    """Where a command module's `register(commands)` adds its commands (`add`) or a group of
    them (`group`, for `pivot GROUP ACTION`). Every API command takes the API options after
    its name as well as before (`api`: a parent parser that sets nothing unless given)."""

    def __init__(
        self, sub: argparse._SubParsersAction[argparse.ArgumentParser], api: argparse.ArgumentParser
    ) -> None:
        self.sub = sub
        self.api = api

    def add(self, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        cmd = self.sub.add_parser(name, parents=[self.api], help=help_text)
        cmd.set_defaults(handler=handler)
        return cmd

    def group(self, name: str, help_text: str) -> Commands:
        actions = self.sub.add_parser(name, help=help_text).add_subparsers(
            dest="action", required=True, metavar="ACTION"
        )
        return Commands(actions, self.api)


def connect(args: argparse.Namespace) -> PIVOTClient:
    return PIVOTClient(args.url, api_key=args.api_key, max_retries=args.retries)


def shows(
    call: Callable[[PIVOTClient, argparse.Namespace], M],
    rows: Callable[[M], Sequence[PIVOTModel]] | None = None,
    columns: Sequence[str] = (),
) -> Handler:
    """A command that makes one call and prints the answer: as a table of `rows(answer)`
    when given, else field by field."""

    def handler(args: argparse.Namespace, p: Printer) -> int:
        with connect(args) as client:
            answer = call(client, args)
        table = None if rows is None else [row.to_dict() for row in rows(answer)]
        p.emit(answer.to_dict(), table, columns)
        return EXIT_OK

    return handler


def load_yaml(path: str) -> dict[str, Any]:
    docs = load_yaml_all(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise UsageError(f"{path} must hold one mapping")
    return docs[0]


def load_yaml_all(path: str, text: str | None = None) -> list[Any]:
    try:
        if text is None:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        return list(yaml.safe_load_all(text))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML: {exc}") from exc
