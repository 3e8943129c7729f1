"""Process setup without torch: signals, sinks, the finished check, failure reporting.

Exit codes: 0 done (or already done), 143 stopped by SIGTERM after a checkpoint (130 for
SIGINT), 1 failed (a `failed` event says why), 2 bad config or environment.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import Any

from pivot_schema import keys
from pivot_schema.storage import CheckpointManifest
from pivot_trainer.checkpoint import CheckpointStore, make_s3_client
from pivot_trainer.config import EXIT_CONFIG_ERROR, ConfigError, TrainConfig
from pivot_trainer.runtime import Runtime
from pivot_trainer.sink import RecordSink

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, EXIT_CONFIG_ERROR
FINAL_FLUSH_S = 30.0  # a finished run waits this long for Redis to come back
STOP_FLUSH_S = 3.0  # a stopped pod has a grace period: keep the exit quick


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it after every step."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            name = signal.Signals(signum).name
            print(f"pivot-trainer: {name}: stopping after this step", file=sys.stderr, flush=True)
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum or signal.SIGTERM)  # 143 for SIGTERM, as a shell reports


def _train(cfg: TrainConfig, rt: Runtime, sink: RecordSink, stop: StopFlag) -> int:
    store: CheckpointStore | None = None
    candidates: Iterator[tuple[CheckpointManifest, bytes]] = iter(())
    if rt.s3_bucket:
        store = CheckpointStore(make_s3_client(rt), rt.s3_bucket, rt.session_id)
        candidates = store.verified()
        newest = next(candidates, None)
        # A finished session exits before torch is even imported (a restarted pod, a rerun).
        if newest is not None and newest[0].epoch >= cfg.epochs:
            print(
                f"pivot-trainer: session {rt.session_id} already finished "
                f"({newest[0].epoch}/{cfg.epochs} epochs, {newest[0].checkpoint_id})",
                flush=True,
            )
            return EXIT_OK
        if newest is not None:
            candidates = _chain(newest, candidates)
    else:
        print("pivot-trainer: PIVOT_S3_BUCKET not set: no checkpoints", file=sys.stderr)
    from pivot_trainer.train import Trainer  # torch loads here

    return Trainer(cfg, rt, sink, stop, store, candidates).run()


def _chain(
    first: tuple[CheckpointManifest, bytes], rest: Iterator[tuple[CheckpointManifest, bytes]]
) -> Iterator[tuple[CheckpointManifest, bytes]]:
    yield first
    yield from rest


def make_sink(rt: Runtime) -> RecordSink:
    """Only rank 0 writes to Redis: a sink without a URL records nothing."""
    opts: dict[str, Any] = {}
    if rt.spool_max_bytes is not None:
        opts["spool_max_bytes"] = rt.spool_max_bytes
    if rt.sink_memory_records is not None:
        opts["memory_records"] = rt.sink_memory_records
    url = rt.redis_url if rt.is_main else None
    return RecordSink(url, rt.session_id, spool_dir=rt.spool_dir, **opts)


def run(cfg: TrainConfig, rt: Runtime) -> int:
    stop = StopFlag()
    stop.install()
    sink = make_sink(rt)
    try:
        return _train(cfg, rt, sink, stop)
    except ConfigError as exc:
        print(f"pivot-trainer: config error: {exc}", file=sys.stderr)
        sink.event(keys.EVENT_FAILED, error=str(exc))
        sink.close(STOP_FLUSH_S)
        return EXIT_CONFIG
    except Exception as exc:
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        print(f"pivot-trainer: failed: {message}", file=sys.stderr)
        sink.event(keys.EVENT_FAILED, error=message)
        sink.close(STOP_FLUSH_S * 3)
        return EXIT_FAILED
