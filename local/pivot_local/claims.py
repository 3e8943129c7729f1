"""What a platform claims before it starts or writes anything: its fixed ports, and its data dir
through an exclusive lock held for the life of the process (flock: the kernel drops it when the
process dies, so even a SIGKILLed `pivot up` frees its data dir)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

from pivot_local.procs import port_free


class PlatformBusy(RuntimeError):
    """Something this platform needs is taken; nothing was started or written."""


def check_ports(host: str, ports: Iterable[int]) -> None:
    for port in ports:
        if not port_free(host, port):
            raise PlatformBusy(f"port {port} on {host} is already in use")


class DataDirLock:
    """`<data dir>/lock`, holding the pid of the platform that has the data dir."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.path = data_dir / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC (Python's default): a child holding the fd would keep the lock alive.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise PlatformBusy(
                f"data dir {self.data_dir} is in use by another pivot up (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the last fd drops the flock
            self._fd = None
