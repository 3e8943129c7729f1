"""Process policy, shared by the entry point and the engine: exit codes, flush budgets, signals.

A leaf module (no torch, nothing else of pivot_trainer): the engine reads the stop flag and
the entry point turns the engine's outcome into an exit code, without either importing the
other's layer.

Exit codes: 0 done (or already done), 143 stopped by SIGTERM after a checkpoint (130 for
SIGINT), 1 failed (a `failed` event says why), 2 bad config or environment (permanent: the
operator fails the session and does not retry).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import MutableMapping
from types import FrameType

from pivot_schema.config import EXIT_CONFIG_ERROR

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = EXIT_CONFIG_ERROR

FINAL_FLUSH_S = 30.0  # a finished run waits this long for Redis to come back
STOP_FLUSH_S = 3.0  # a stopped pod has a grace period: keep the exit quick
FAILED_FLUSH_S = 3 * STOP_FLUSH_S  # the `failed` event is what tells the user why


class StopFlag:
    """Set by SIGTERM/SIGINT; the training loop checks it after every step."""

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
    def signal_name(self) -> str:
        """The signal that stopped this process; SIGTERM for a rank stopped by its gang."""
        return signal.Signals(self.signum or signal.SIGTERM).name

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum or signal.SIGTERM)  # 143 for SIGTERM, as a shell reports


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """A DataLoader worker's init: the kubelet signals the whole process group, and the main
    process decides when its workers stop."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def prepare_determinism(environ: MutableMapping[str, str]) -> None:
    """What deterministic training needs before CUDA initialises: cuBLAS fixes its workspace
    when it makes a handle, and without a fixed one its reductions may split differently from
    run to run (torch's deterministic mode refuses CUDA matmuls then). A set value wins."""
    environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
