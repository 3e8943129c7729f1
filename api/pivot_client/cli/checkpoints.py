"""`pivot checkpoints list|download|upload|delete`."""

from __future__ import annotations

import argparse
import json
import os

from pivot_client.cli.common import Commands, connect, shows
from pivot_client.cli.exits import EXIT_OK, UsageError
from pivot_client.cli.output import Printer
from pivot_client.cli.progress import transfer_progress

CHECKPOINT_COLUMNS = (
    *("checkpoint_id", "session_id", "epoch"),
    *("metric_name", "metric_value", "file_size_mb", "is_best"),
)


def register(commands: Commands) -> None:
    ckpts = commands.group("checkpoints", "model checkpoints")
    listing = shows(
        lambda client, args: client.checkpoints.list(session_id=args.session, limit=args.limit),
        lambda answer: answer.checkpoints,
        CHECKPOINT_COLUMNS,
    )
    cmd = ckpts.add("list", "list checkpoints", listing)
    cmd.add_argument("--session", help="only this session's")
    cmd.add_argument("--limit", type=int)
    cmd = ckpts.add("download", "download a checkpoint", cmd_download)
    cmd.add_argument("checkpoint")
    cmd.add_argument("output_path", nargs="?", default=".", help="file or directory (default .)")
    cmd = ckpts.add("upload", "upload a checkpoint file", cmd_upload)
    cmd.add_argument("file")
    cmd.add_argument("--session", required=True)
    cmd.add_argument("--epoch", type=int, required=True)
    cmd.add_argument("--metrics", help="JSON object, e.g. '{\"val_loss\": 0.3}'")
    delete = shows(lambda client, args: client.checkpoints.delete(args.checkpoint))
    ckpts.add("delete", "delete a checkpoint", delete).add_argument("checkpoint")


def cmd_download(args: argparse.Namespace, p: Printer) -> int:
    with connect(args) as client:
        path = client.checkpoints.download(
            args.checkpoint, args.output_path, on_progress=transfer_progress("download")
        )
    result = {"checkpoint_id": args.checkpoint, "path": str(path)}
    p.emit(result) if p.fmt != "table" else p.out.write(f"{path}\n")
    return EXIT_OK


def cmd_upload(args: argparse.Namespace, p: Printer) -> int:
    metrics = None
    if args.metrics:
        try:
            metrics = json.loads(args.metrics)
        except ValueError as exc:
            raise UsageError(f"--metrics is not JSON: {exc}") from exc
    if not os.path.isfile(args.file):
        raise UsageError(f"no such file: {args.file}")
    with connect(args) as client:
        result = client.checkpoints.upload(
            args.file,
            session_id=args.session,
            epoch=args.epoch,
            metrics=metrics,
            on_progress=transfer_progress("upload"),
        )
    p.emit(result.to_dict())
    return EXIT_OK
