"""The process around a run, without torch: signals, the sink, the finished check, and the
run's outcome turned into its final event and exit code (process.py has the codes)."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from typing import Any

from pivot_schema import keys
from pivot_schema.storage import CheckpointManifest
from pivot_trainer.checkpoint import CheckpointStore, make_s3_client
from pivot_trainer.config import ConfigError, TrainConfig
from pivot_trainer.outcome import Ending, Outcome
from pivot_trainer.process import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    FAILED_FLUSH_S,
    FINAL_FLUSH_S,
    STOP_FLUSH_S,
    StopFlag,
)
from pivot_trainer.runtime import Runtime
from pivot_trainer.sink import RecordSink


def _train(cfg: TrainConfig, rt: Runtime, sink: RecordSink, stop: StopFlag) -> Outcome:
    store: CheckpointStore | None = None
    candidates: Iterator[tuple[CheckpointManifest, bytes]] = iter(())
    if rt.s3_bucket:
        store = CheckpointStore(make_s3_client(rt), rt.s3_bucket, rt.session_id)
        candidates = store.verified()
        newest = next(candidates, None)
        # A finished session exits before torch is even imported (a restarted pod, a rerun).
        if newest is not None and newest[0].epoch >= cfg.epochs:
            manifest = newest[0]
            return Outcome(
                Ending.ALREADY_DONE,
                epoch=manifest.epoch,
                total_epochs=cfg.epochs,
                checkpoint_id=manifest.checkpoint_id,
            )
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


def _failed(sink: RecordSink, exc: Exception) -> int:
    """A failure's event and exit code: a config error is permanent (no retry), any other
    failure is reported with its traceback."""
    if isinstance(exc, ConfigError):
        print(f"pivot-trainer: config error: {exc}", file=sys.stderr)
        sink.event(keys.EVENT_FAILED, error=str(exc))
        sink.close(STOP_FLUSH_S)
        return EXIT_CONFIG
    traceback.print_exception(exc)
    message = f"{type(exc).__name__}: {exc}"
    print(f"pivot-trainer: failed: {message}", file=sys.stderr)
    sink.event(keys.EVENT_FAILED, error=message)
    sink.close(FAILED_FLUSH_S)
    return EXIT_FAILED


def finish(outcome: Outcome, rt: Runtime, sink: RecordSink, stop: StopFlag) -> int:
    """The outcome's final event, the sink flushed within its budget, and the exit code."""
    sid = rt.session_id
    if outcome.ending is Ending.FAILED:
        assert outcome.error is not None
        return _failed(sink, outcome.error)
    if outcome.ending is Ending.ALREADY_DONE:
        print(
            f"pivot-trainer: session {sid} already finished "
            f"({outcome.epoch}/{outcome.total_epochs} epochs, {outcome.checkpoint_id})",
            flush=True,
        )
        return EXIT_OK
    if outcome.ending is Ending.STOPPED:
        sink.event(
            keys.EVENT_STOPPED,
            epoch=outcome.epoch,
            step=outcome.step,
            signal=stop.signal_name,
            checkpoint_id=outcome.checkpoint_id,
        )
        sink.close(STOP_FLUSH_S)
        print(f"pivot-trainer: stopped at epoch {outcome.epoch} step {outcome.step}", flush=True)
        return stop.exit_code
    sink.event(
        keys.EVENT_COMPLETED,
        epoch=outcome.epoch,
        total_epochs=outcome.total_epochs,
        metrics=outcome.metrics,
        best_metric=outcome.best_metric,
        checkpoint_id=outcome.checkpoint_id,
    )
    # A SIGTERM while flushing cuts the wait to a stopped pod's budget.
    sink.close(FINAL_FLUSH_S, hurry=lambda: stop.requested, hurry_timeout=STOP_FLUSH_S)
    print(f"pivot-trainer: session {sid} completed {outcome.total_epochs} epochs", flush=True)
    return EXIT_OK


def run(cfg: TrainConfig, rt: Runtime) -> int:
    stop = StopFlag()
    stop.install()
    sink = make_sink(rt)
    try:
        return finish(_train(cfg, rt, sink, stop), rt, sink, stop)
    except Exception as exc:
        return _failed(sink, exc)
