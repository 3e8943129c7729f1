"""`pivot models deploy|list|get|update|delete` and `pivot predict NAME IMAGE...`."""

from __future__ import annotations

import argparse

from pivot_client.cli.common import Commands, connect, shows
from pivot_client.cli.exits import EXIT_OK, UsageError
from pivot_client.cli.output import Printer

MODEL_COLUMNS = ("name", "status", "ready_replicas", "replicas", "checkpoint_id", "session_id")
CANDIDATE_COLUMNS = ("image", "x", "y", "probability", "area")


def register(commands: Commands) -> None:
    models = commands.group("models", "model servers: serve a checkpoint, predict")
    cmd = models.add("deploy", "serve a checkpoint", cmd_deploy)
    cmd.add_argument("name", help="the server's name (a DNS label)")
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--session", help="serve this session's checkpoint")
    source.add_argument("--uri", help="serve this s3://bucket/key (with --sha256)")
    cmd.add_argument("--checkpoint", help="best (default), latest, or a checkpoint id")
    cmd.add_argument("--sha256", help="the SHA-256 the --uri file must have")
    cmd.add_argument("--replicas", type=int, default=1)
    cmd.add_argument("--max-batch-size", type=int, help="images run together at most")
    cmd.add_argument("--max-delay-ms", type=float, help="how long a batch waits to fill")
    cmd.add_argument("--threshold", type=float, help="lesion probability threshold")
    cmd.add_argument("--gpu", type=int, help="GPUs per pod")
    lst = shows(lambda client, _a: client.models.list(), lambda a: a.models, MODEL_COLUMNS)
    models.add("list", "list model servers", lst)
    get = shows(lambda client, args: client.models.get(args.name))
    models.add("get", "show one model server", get).add_argument("name")
    cmd = models.add("update", "scale, or serve another checkpoint (rolling)", cmd_update)
    cmd.add_argument("name")
    cmd.add_argument("--replicas", type=int)
    cmd.add_argument("--checkpoint", help="best, latest, or a checkpoint id")
    delete = shows(lambda client, args: client.models.delete(args.name))
    models.add("delete", "delete a model server", delete).add_argument("name")
    cmd = commands.add("predict", "find lesions in images with a served model", cmd_predict)
    cmd.add_argument("name", help="the model server")
    cmd.add_argument("images", nargs="+", help="PNG (8/16-bit grayscale) or .npy files")
    cmd.add_argument("--mask", action="store_true", help="include the probability maps")


def cmd_deploy(args: argparse.Namespace, p: Printer) -> int:
    if args.uri and not args.sha256:
        raise UsageError("--uri needs --sha256")
    with connect(args) as client:
        made = client.models.deploy(
            args.name,
            session_id=args.session,
            checkpoint=args.checkpoint,
            uri=args.uri,
            sha256=args.sha256,
            replicas=args.replicas,
            max_batch_size=args.max_batch_size,
            max_delay_ms=args.max_delay_ms,
            threshold=args.threshold,
            resources={"gpu": args.gpu} if args.gpu is not None else None,
        )
    p.emit(made.to_dict(), None, ())
    return EXIT_OK


def cmd_update(args: argparse.Namespace, p: Printer) -> int:
    if args.replicas is None and args.checkpoint is None:
        raise UsageError("give --replicas and/or --checkpoint")
    with connect(args) as client:
        updated = client.models.update(
            args.name, replicas=args.replicas, checkpoint=args.checkpoint
        )
    p.emit(updated.to_dict(), None, ())
    return EXIT_OK


def cmd_predict(args: argparse.Namespace, p: Printer) -> int:
    with connect(args) as client:
        answer = client.models.predict(args.name, args.images, return_mask=args.mask)
    rows = [
        {"image": path, **candidate.to_dict()}
        for path, prediction in zip(args.images, answer.predictions, strict=False)
        for candidate in prediction.candidates
    ]
    p.emit(answer.to_dict(), rows, CANDIDATE_COLUMNS)
    return EXIT_OK
