"""The emulator's objects on disk: a snapshot plus an append log, as etcd keeps a snapshot and
a write-ahead log.

Layout of the directory:
- `snapshot.json`: every object at one moment, with the log generation `gen` that follows it;
  written to a temporary file, fsynced and renamed, so it is always whole.
- `log.<gen>.jsonl`: one line per flush, `{"rv": N, "put": [[group, plural, obj]...],
  "del": [[group, plural, namespace, name]...]}`; a torn last line (a crash mid-append) is
  ignored on load.
- `rv`: a resourceVersion ceiling reserved durably before any RV above it is handed out, so
  RVs never repeat across a restart even when the last second of writes was lost.

Fsync policy: Redis's `appendfsync everysec`. Writes only note the object in a dict (the last
state of each key wins); every second (KubeEmulator's `fsync_interval`) the emulator appends
the dirty keys as one line and fsyncs it in a thread. A crash loses at most that last second;
a clean stop flushes everything. When the log outgrows the snapshot it is compacted into a new
snapshot.

Watch history is not kept: after a restart a watch from an older RV gets 410 Gone and its
client re-lists, as after an etcd compaction.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("pivot.kube.persist")

Obj = dict[str, Any]
TypeKey = tuple[str, str]  # (group, plural)
Key = tuple[str, str]  # (namespace or "", name)

SNAPSHOT = "snapshot.json"
RV_FILE = "rv"
# RVs reserved per durable write of the ceiling: one small fsync per this many writes.
RV_BLOCK = 10_000


@dataclass
class Batch:
    """What one flush writes: the dirty keys and, when compacting, a whole snapshot."""

    rv: int
    changes: dict[tuple[TypeKey, Key], Obj | None]
    snapshot: list[tuple[TypeKey, Obj]] | None = None


class Journal:
    """Durable state of a Store under `directory` (see the module's docstring). The log is
    compacted once it is over `compact_min_bytes` and twice the snapshot."""

    def __init__(self, directory: Path | str, *, compact_min_bytes: int = 8 << 20) -> None:
        self.directory = Path(directory)
        self.compact_min_bytes = compact_min_bytes
        self._pending: dict[tuple[TypeKey, Key], Obj | None] = {}
        self._gen = 0  # the generation of the log being appended to
        self._log_bytes = 0
        self._snapshot_bytes = 0
        # Secrets live here: owner-only, as etcd's data dir.
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    # ---- load -----------------------------------------------------------------------------

    def load(self) -> tuple[list[tuple[TypeKey, Obj]] | None, int]:
        """The saved objects (None when nothing was saved) and the RV to continue from."""
        state: dict[tuple[TypeKey, Key], Obj] = {}
        rv, found = 0, False
        snap = self.directory / SNAPSHOT
        if snap.exists():
            data = json.loads(snap.read_bytes())
            self._gen, rv, found = int(data["gen"]), int(data["rv"]), True
            self._snapshot_bytes = snap.stat().st_size
            for group, plural, obj in data["objects"]:
                state[((group, plural), _key(obj))] = obj
        for gen, path in self._logs():
            if gen < self._gen:
                path.unlink()  # already in the snapshot (a compaction stopped before deleting it)
                continue
            found = True
            rv = max(rv, self._replay(path, state))
            self._gen = gen
        ceiling = self.directory / RV_FILE
        if ceiling.exists():
            rv = max(rv, int(ceiling.read_text().strip() or 0))
        self._log_bytes = self._log_path().stat().st_size if self._log_path().exists() else 0
        if not found:
            return None, rv
        return [(tk, obj) for (tk, _), obj in state.items()], rv

    def _logs(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.glob("log.*.jsonl"):
            try:
                found.append((int(path.name.split(".")[1]), path))
            except ValueError:
                continue
        return sorted(found)

    @staticmethod
    def _replay(path: Path, state: dict[tuple[TypeKey, Key], Obj]) -> int:
        rv = 0
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    log.warning("%s ends in a torn record (a crash mid-write): ignored", path)
                    break
                rv = max(rv, int(entry["rv"]))
                for group, plural, obj in entry.get("put", ()):
                    state[((group, plural), _key(obj))] = obj
                for group, plural, ns, name in entry.get("del", ()):
                    state.pop(((group, plural), (ns, name)), None)
        return rv

    # ---- writes (the store's thread) --------------------------------------------------------

    def record(self, type_key: TypeKey, key: Key, obj: Obj | None) -> None:
        """Note a stored (or, with None, removed) object; it is written at the next flush."""
        self._pending[(type_key, key)] = obj

    def reserve(self, rv: int) -> int:
        """Durably reserve RVs up to a new ceiling above `rv`; returns the ceiling."""
        ceiling = rv + RV_BLOCK
        _write_atomic(self.directory / RV_FILE, str(ceiling).encode())
        return ceiling

    def take(self, rv: int, objects: dict[TypeKey, dict[Key, Obj]]) -> Batch | None:
        """The dirty keys since the last take (and a snapshot when the log has outgrown the
        last one). Stored objects are never mutated, so the batch can be written by another
        thread while the store goes on."""
        snapshot = None
        if self._log_bytes > max(self.compact_min_bytes, 2 * self._snapshot_bytes):
            snapshot = [(tk, obj) for tk, objs in objects.items() for obj in objs.values()]
        if not self._pending and snapshot is None:
            return None
        changes, self._pending = self._pending, {}
        return Batch(rv, changes, snapshot)

    def put_back(self, batch: Batch) -> None:
        """A batch that could not be written goes back, under anything newer."""
        for k, obj in batch.changes.items():
            self._pending.setdefault(k, obj)

    # ---- writes (any thread, one at a time) ---------------------------------------------------

    def write(self, batch: Batch) -> None:
        if batch.changes:
            entry: dict[str, Any] = {"rv": batch.rv, "put": [], "del": []}
            for ((group, plural), (ns, name)), obj in batch.changes.items():
                if obj is None:
                    entry["del"].append([group, plural, ns, name])
                else:
                    entry["put"].append([group, plural, obj])
            line = json.dumps(entry, separators=(",", ":"), default=str).encode() + b"\n"
            fd = os.open(self._log_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._log_bytes += len(line)
        if batch.snapshot is not None:
            self._compact(batch)

    def _compact(self, batch: Batch) -> None:
        # The snapshot names the log that follows it; the old log goes only once the snapshot
        # is durable, and a load skips logs older than the snapshot's generation.
        assert batch.snapshot is not None
        old = self._log_path()
        body = {
            "gen": self._gen + 1,
            "rv": batch.rv,
            "objects": [[g, p, obj] for (g, p), obj in batch.snapshot],
        }
        data = json.dumps(body, separators=(",", ":"), default=str).encode()
        _write_atomic(self.directory / SNAPSHOT, data)
        self._gen += 1
        self._snapshot_bytes, self._log_bytes = len(data), 0
        old.unlink(missing_ok=True)
        log.info("compacted %d objects into a %d-byte snapshot", len(batch.snapshot), len(data))

    def _log_path(self) -> Path:
        return self.directory / f"log.{self._gen}.jsonl"


def _key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename, fsync the directory: the file is the old one or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
