"""Progress while something runs: a session's epochs (`sessions watch`) and the bytes of a
checkpoint transfer."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from pivot_client.cli.output import Printer, escape
from pivot_client.types import FINAL_STATUSES


class Progress:
    """`sessions watch`: a bar redrawn in place on a terminal, one line per epoch elsewhere
    (logs and pipes should not fill up with carriage returns)."""

    WIDTH = 30

    def __init__(self, p: Printer, *, total: int, start_epoch: int = 0) -> None:
        self.p = p
        self.total = max(total, 1)
        self.live = p.out.isatty() and p.fmt == "table"
        self.started = time.monotonic()
        self.first_epoch = start_epoch
        self.epoch = start_epoch
        self.drawn = False  # a bar is on the terminal's current line

    def eta(self) -> str:
        done = self.epoch - self.first_epoch
        if done <= 0 or self.epoch >= self.total:
            return "-"
        seconds = (time.monotonic() - self.started) / done * (self.total - self.epoch)
        return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"

    def update(self, record: Mapping[str, Any]) -> None:
        self.epoch = int(record.get("epoch") or self.epoch)
        if self.p.fmt != "table":
            self.p.out.write(json.dumps(dict(record)) + "\n")
            self.p.out.flush()
            return
        values = " ".join(
            f"{escape(k)}={v:.4g}"
            for k, v in record.items()
            # `loss` is one of the others again (val_loss, mostly): shown once.
            if k not in ("epoch", "timestamp", "loss") and isinstance(v, int | float)
        )
        filled = int(self.WIDTH * min(self.epoch, self.total) / self.total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"epoch {self.epoch}/{self.total} [{bar}] ETA {self.eta()}  {values}"
        if self.live:
            self.p.out.write("\r\x1b[2K" + line)
            self.drawn = True
        else:
            self.p.out.write(line + "\n")
        self.p.out.flush()

    def status(self, status: str) -> None:
        if self.p.fmt == "table" and not self.live and status not in FINAL_STATUSES:
            self.p.out.write(f"status {escape(status)}\n")

    def finish(self, status: str, message: str | None, latest: Mapping[str, Any]) -> None:
        if self.p.fmt != "table":
            return
        if self.drawn:
            self.p.out.write("\n")
        reason = f": {escape(message)}" if message and status != "completed" else ""
        metrics = " ".join(f"{escape(k)}={v:.4g}" for k, v in latest.items())
        shown = self.p.paint(escape(status), status)
        self.p.out.write(f"{shown}{reason}  {metrics}".rstrip() + "\n")


def transfer_progress(label: str) -> Callable[[int, int], None] | None:
    """A byte counter on stderr while a checkpoint moves, for a terminal only (stdout is
    what the command answers, and a log has no use for carriage returns)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        pct = 100 * done / total if total else 100
        sys.stderr.write(f"\r{label} {done / 1e6:.1f}/{total / 1e6:.1f} MB ({pct:.0f}%)")
        if done >= total:
            sys.stderr.write("\n")

    return show
