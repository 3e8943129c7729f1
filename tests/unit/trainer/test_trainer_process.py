"""The process around a run: the stop flag, the checkpoint thread, and how a run's outcome
becomes its final event and exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pivot_schema import env as env_names
from pivot_schema import keys
from pivot_trainer.app import finish
from pivot_trainer.checkpoint_writer import CheckpointWriter
from pivot_trainer.config import ConfigError
from pivot_trainer.outcome import Ending, Outcome
from pivot_trainer.process import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, StopFlag
from pivot_trainer.runtime import Runtime, read_env
from pivot_trainer.sink import RecordSink


@pytest.fixture
def handlers() -> Iterator[None]:
    """Whatever a test installs for SIGTERM/SIGINT is undone after it."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.usefixtures("handlers")
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_sets_the_stop_flag_and_its_exit_code(signum: int, code: int) -> None:
    stop = StopFlag()
    assert not stop.requested
    stop.install()
    os.kill(os.getpid(), signum)
    _until(lambda: stop.requested, "the handler")
    assert stop.exit_code == code and stop.signal_name == signal.Signals(signum).name


def test_a_rank_stopped_by_its_gang_reports_sigterm() -> None:
    stop = StopFlag()  # no signal here: another rank was told to stop
    assert (stop.exit_code, stop.signal_name) == (143, "SIGTERM")


def test_the_checkpoint_writer_runs_jobs_in_order_one_at_a_time() -> None:
    writer = CheckpointWriter()
    release = threading.Event()
    done: list[int] = []
    threads: set[str] = set()

    def job(n: int) -> None:
        threads.add(threading.current_thread().name)
        if n == 0:
            release.wait(5)
        done.append(n)

    writer.submit(lambda: job(0))
    second = threading.Thread(target=lambda: writer.submit(lambda: job(1)))
    second.start()
    time.sleep(0.1)
    assert second.is_alive() and done == []  # the second waits for the first to commit
    release.set()
    second.join(5)
    writer.wait()
    writer.close()
    assert done == [0, 1] and threads == {"pivot-checkpoint"}


def test_a_failed_checkpoint_fails_the_run_once_and_close_lets_the_last_one_finish() -> None:
    writer = CheckpointWriter()
    done: list[str] = []

    def boom() -> None:
        raise OSError("S3 said no")

    writer.submit(boom)
    with pytest.raises(OSError, match="S3 said no"):
        writer.wait()
    writer.wait()  # raised once, not again

    def last() -> None:
        time.sleep(0.1)
        done.append("last")

    writer.submit(last)
    writer.close()
    assert done == ["last"]
    writer.submit(boom)
    with pytest.raises(OSError):
        writer.submit(lambda: None)  # a submit waits for the one in flight, and its error
    writer.close()


class RecordingSink(RecordSink):
    """A sink that keeps what it is given: (event type, fields) and close timeouts."""

    def __init__(self, spool: Path) -> None:
        super().__init__(None, "t-unit", spool_dir=spool)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.closed: list[float] = []

    def event(self, event_type: str, **fields: Any) -> None:
        self.events.append((event_type, fields))

    def close(self, timeout: float, **_: Any) -> bool:
        self.closed.append(timeout)
        return True


@pytest.fixture
def rt() -> Runtime:
    return read_env({env_names.SESSION_ID: "t-unit"})


def _outcome(ending: Ending, **fields: Any) -> Outcome:
    return Outcome(ending, epoch=2, total_epochs=3, step=5, checkpoint_id="ckpt", **fields)


def test_a_completed_run_reports_its_result_and_exits_0(tmp_path: Path, rt: Runtime) -> None:
    sink = RecordingSink(tmp_path)
    outcome = _outcome(Ending.COMPLETED, metrics={"val_dice": 0.5}, best_metric=0.5)
    assert finish(outcome, rt, sink, StopFlag()) == EXIT_OK
    assert sink.events == [
        (
            keys.EVENT_COMPLETED,
            {
                "epoch": 2,
                "total_epochs": 3,
                "metrics": {"val_dice": 0.5},
                "best_metric": 0.5,
                "checkpoint_id": "ckpt",
            },
        )
    ]
    assert sink.closed == [30.0]


def test_a_stopped_run_reports_where_and_exits_with_the_signal(tmp_path: Path, rt: Runtime) -> None:
    sink, stop = RecordingSink(tmp_path), StopFlag()
    stop.signum = signal.SIGINT
    assert finish(_outcome(Ending.STOPPED), rt, sink, stop) == 130
    assert sink.events == [
        (
            keys.EVENT_STOPPED,
            {"epoch": 2, "step": 5, "signal": "SIGINT", "checkpoint_id": "ckpt"},
        )
    ]
    assert sink.closed == [3.0]


def test_failures_report_why_and_a_config_error_is_permanent(
    tmp_path: Path, rt: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = RecordingSink(tmp_path)
    try:
        raise RuntimeError("out of memory")
    except RuntimeError as exc:
        error = exc
    assert finish(_outcome(Ending.FAILED, error=error), rt, sink, StopFlag()) == EXIT_FAILED
    assert sink.events == [(keys.EVENT_FAILED, {"error": "RuntimeError: out of memory"})]
    assert sink.closed == [9.0]
    err = capsys.readouterr().err
    assert "Traceback" in err and "pivot-trainer: failed: RuntimeError: out of memory" in err
    sink = RecordingSink(tmp_path)
    bad = _outcome(Ending.FAILED, error=ConfigError("no CUDA device"))
    assert finish(bad, rt, sink, StopFlag()) == EXIT_CONFIG
    assert sink.events == [(keys.EVENT_FAILED, {"error": "no CUDA device"})]
    assert "Traceback" not in capsys.readouterr().err  # one line says what to fix


def test_an_already_finished_session_sends_nothing(
    tmp_path: Path, rt: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = RecordingSink(tmp_path)
    assert finish(_outcome(Ending.ALREADY_DONE), rt, sink, StopFlag()) == EXIT_OK
    assert sink.events == [] and sink.closed == []
    assert "session t-unit already finished (2/3 epochs, ckpt)" in capsys.readouterr().out


def test_process_modules_do_not_import_torch() -> None:
    """A config error or a finished session exits before torch's seconds of import."""
    code = (
        "import sys, pivot_trainer.__main__, pivot_trainer.app, pivot_trainer.process, "
        "pivot_trainer.outcome, pivot_trainer.checkpoint_writer; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
