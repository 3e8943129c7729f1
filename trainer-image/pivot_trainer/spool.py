"""The sink's on-disk overflow: an append-only spool of records that Redis has not taken yet.

Only the sink's sending thread touches a spool. Records are JSON lines in numbered segment
files, oldest first (a column entry's binary columns as base64); `ack` holds how far into the
head segment Redis has confirmed. The spool survives the process: a restarted trainer in the
same pod directory sends what its predecessor left, first. The ack is written after Redis
answered, so a kill between the two resends a few records, which the sink's idempotent appends
discard: nothing is lost and nothing doubles.

Disk is bounded: beyond `max_bytes`, step-level records (steps, GPU samples) are dropped from
the oldest segments, counted in `dropped`; epoch records and events are never dropped.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SEGMENT_BYTES = 4 * 2**20
_SEGMENT = "seg-{:010d}.jsonl"
_ACK = "ack"
_LOCK = "lock"


@dataclass(slots=True)
class Record:
    """One queued stream entry: JSON `data` for `stream`; `order` makes the append idempotent
    by record order (metrics, steps), `rid` (`run:seq`) by identity (events, GPU samples)."""

    stream: str
    data: str
    maxlen: int | None = None
    order: tuple[str, ...] = ()
    rid: str = ""
    droppable: bool = False  # step-level points the disk bound may drop
    points: int = 1  # records the entry holds (rows of a column entry)
    columns: bytes = b""  # a column entry's keys.COLUMNS_FIELD (`data` is then its head)

    def line(self) -> bytes:
        row = [self.stream, self.data, self.maxlen, self.order, self.rid, self.droppable]
        if self.points != 1 or self.columns:
            row.append(self.points)
        if self.columns:
            row.append(base64.b64encode(self.columns).decode())
        return json.dumps(row, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def parse(cls, line: bytes) -> Record:
        stream, data, maxlen, order, rid, droppable, *rest = json.loads(line)
        points = int(rest[0]) if rest else 1
        columns = base64.b64decode(rest[1]) if len(rest) > 1 else b""
        return cls(stream, data, maxlen, tuple(order), rid, bool(droppable), points, columns)


class SpoolLocked(RuntimeError):
    """Another live process spools for this session in the same directory."""


class Spool:
    def __init__(
        self, directory: str | Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        # Several segments within the bound, so dropping works on the oldest part only.
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 8))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.dir / _LOCK, "a")  # noqa: SIM115 - held for the spool's life
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_fh.close()
            raise SpoolLocked(f"{self.dir} is in use by another process") from None
        self.dropped = 0
        self._segments: list[int] = []  # segment numbers, oldest first
        self._sizes: dict[int, int] = {}
        self._offset = 0  # bytes of the head segment that Redis has confirmed
        self._records = 0  # lines
        self._points = 0  # records they hold (a packed line holds several)
        self._writer: IO[bytes] | None = None
        self._load()

    # -- state -------------------------------------------------------------------------------

    def _path(self, seg: int) -> Path:
        return self.dir / _SEGMENT.format(seg)

    def _load(self) -> None:
        segs = sorted(
            int(p.name[4:14]) for p in self.dir.glob("seg-*.jsonl") if p.name[4:14].isdigit()
        )
        try:
            head, offset = (int(v) for v in (self.dir / _ACK).read_text().split())
        except (OSError, ValueError):
            head, offset = -1, 0
        for seg in segs:
            if seg < head:  # fully sent; its deletion was interrupted
                self._path(seg).unlink(missing_ok=True)
                continue
            data = self._path(seg).read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):  # a line torn by a kill mid-write: it was never acknowledged
                os.truncate(self._path(seg), end)
            start = offset if seg == head and offset <= end else 0
            if start and data[start - 1 : start] != b"\n":
                start = 0  # not a line boundary: resend the segment (appends are idempotent)
            if not self._segments:
                self._offset = start
            self._segments.append(seg)
            self._sizes[seg] = end
            lines = data[start:end].splitlines()
            self._records += len(lines)
            self._points += sum(Record.parse(ln).points for ln in lines)

    def _save_ack(self) -> None:
        head = self._segments[0] if self._segments else 0
        tmp = self.dir / (_ACK + ".tmp")
        tmp.write_text(f"{head} {self._offset}")
        os.replace(tmp, self.dir / _ACK)

    @property
    def records(self) -> int:
        """Lines (stream entries) in the spool."""
        return self._records

    @property
    def points(self) -> int:
        """Records (metric, step and event points) in the spool."""
        return self._points

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values()) - self._offset

    def __bool__(self) -> bool:
        return self._records > 0

    # -- writing -----------------------------------------------------------------------------

    def append(self, records: Iterable[Record]) -> None:
        for record in records:
            line = record.line()
            if self._writer is None or self._sizes[self._segments[-1]] >= self.segment_bytes:
                self._roll()
            assert self._writer is not None
            self._writer.write(line)
            self._sizes[self._segments[-1]] += len(line)
            self._records += 1
            self._points += record.points
        if self._writer is not None:
            self._writer.flush()  # in the page cache: it survives the process being killed
        if self.bytes > self.max_bytes:
            self._shrink()

    def _roll(self) -> None:
        if self._writer is not None:
            self._writer.close()
        seg = self._segments[-1] + 1 if self._segments else 0
        self._segments.append(seg)
        self._sizes[seg] = 0
        self._writer = open(self._path(seg), "ab")  # noqa: SIM115 - kept open for appends
        if len(self._segments) == 1:
            self._offset = 0
            self._save_ack()

    def _shrink(self) -> None:
        """Drop step-level records from the oldest segments until the spool fits its bound."""
        dropped = 0
        for seg in list(self._segments):
            if self.bytes <= self.max_bytes:
                break
            head = seg == self._segments[0]
            path = self._path(seg)
            data = path.read_bytes()[self._offset if head else 0 : self._sizes[seg]]
            kept, lost, lost_points = [], 0, 0
            for ln in data.splitlines(keepends=True):
                record = Record.parse(ln)
                if record.droppable:
                    lost, lost_points = lost + 1, lost_points + record.points
                else:
                    kept.append(ln)
            if not lost:
                continue
            if seg == self._segments[-1] and self._writer is not None:
                self._writer.close()
                self._writer = None
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(b"".join(kept))
            if head:
                # Ack the rewritten head from its start before it replaces the old one: a kill
                # between the two resends, never skips.
                self._offset = 0
                self._save_ack()
            os.replace(tmp, path)
            self._sizes[seg] = sum(len(ln) for ln in kept)
            self._records -= lost
            self._points -= lost_points
            dropped += lost_points
        if dropped:
            self.dropped += dropped
            print(
                f"pivot-trainer: spool over {self.max_bytes} bytes: dropped {dropped} step-level "
                f"point(s) ({self.dropped} in all); epoch records and events are kept",
                file=sys.stderr,
            )

    # -- reading -----------------------------------------------------------------------------

    def peek(self, n: int) -> tuple[list[Record], int]:
        """Up to `n` of the oldest records (from one segment), and the offset after them."""
        if not self._segments:
            return [], 0
        seg = self._segments[0]
        with open(self._path(seg), "rb") as fh:
            fh.seek(self._offset)
            lines: list[bytes] = []
            end = self._offset
            while len(lines) < n and end < self._sizes[seg]:
                line = fh.readline()
                lines.append(line)
                end += len(line)
        return [Record.parse(ln) for ln in lines], end

    def consume(self, records: list[Record], end: int) -> None:
        """Redis took the records that `peek` returned with `end`: forget them."""
        seg = self._segments[0]
        self._offset = end
        self._records -= len(records)
        self._points -= sum(r.points for r in records)
        if end >= self._sizes[seg]:
            if len(self._segments) == 1 and self._writer is not None:
                self._writer.close()
                self._writer = None
            self._segments.pop(0)
            del self._sizes[seg]
            self._offset = 0
            self._save_ack()  # names the next head (or none) before this one disappears
            self._path(seg).unlink(missing_ok=True)
        else:
            self._save_ack()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self._segments:  # all sent: leave nothing behind
            for name in (_ACK, _LOCK):
                (self.dir / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.dir.rmdir()
        self._lock_fh.close()
