"""Child processes that never outlive the platform.

Every server or trainer that pivot_local starts gets PR_SET_PDEATHSIG, so even a SIGKILLed
`pivot up` leaves nothing behind, and its own process group, so a stop reaches its children.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    def preexec() -> None:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    death_signal: int = signal.SIGKILL,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session that is killed when this process dies."""
    return subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent(death_signal),
    )


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """SIGTERM the child's process group, then SIGKILL it after `timeout` seconds."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL what is left of a dead child's process group (e.g. workers of a killed
    uvicorn, which would keep its listening socket)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now: a bind as uvicorn and Redis do it
    (SO_REUSEADDR, so a port in TIME_WAIT after our own last run counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` or one of its descendants (uvicorn's workers share the parent's
    socket) holds a listening TCP socket on `port`."""
    import psutil  # the api extra's, which the local extra includes

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return False
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    return True
    return False


def wait_until_serving(
    url: str,
    proc: subprocess.Popen[Any],
    *,
    timeout: float,
    what: str = "the server",
    log: Path | None = None,
    max_status: int = 499,
    port: int | None = None,
) -> None:
    """Poll `url` until it answers with a status up to `max_status`; fail at once if `proc`
    exits, naming `what` and quoting the end of its `log`.

    With `port`, an answer counts only once `proc` itself listens on that port: otherwise
    another server holding the port could answer for a child that failed to bind."""
    import httpx  # the local extra's; only the waiting callers need it

    def fail(reason: str) -> RuntimeError:
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        return RuntimeError(f"{what} {reason}" + (f"; its log ends:\n{tail}" if tail else ""))

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise fail(f"exited with {proc.returncode}")
        ours = port is None or listens_on(proc.pid, port)
        with contextlib.suppress(httpx.HTTPError):
            if ours and httpx.get(url, timeout=2).status_code <= max_status:
                return
        if time.monotonic() > deadline:
            raise fail(f"did not answer {url} within {timeout:.0f}s")
        time.sleep(0.1)


class LoopRunner(Protocol):
    """What runs on a loop of its own: `run()` until `stop()` is called (from that loop)."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


R = TypeVar("R", bound=LoopRunner)


@contextlib.contextmanager
def run_in_thread(make: Callable[[], R], name: str, *, stop_within: float) -> Iterator[R]:
    """`make()`'s runner on a new event loop in a thread of its own, until the context exits:
    then it is stopped from its loop and waited for (at most `stop_within` seconds)."""
    loop = asyncio.new_event_loop()
    made: list[R] = []
    ready, done = threading.Event(), threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        made.append(make())
        ready.set()
        try:
            loop.run_until_complete(made[0].run())
        except Exception:
            logging.getLogger("pivot.local").exception("%s crashed", name)
        finally:
            loop.close()
            done.set()

    threading.Thread(target=main, name=name, daemon=True).start()
    ready.wait()
    try:
        yield made[0]
    finally:
        loop.call_soon_threadsafe(made[0].stop)
        done.wait(timeout=stop_within)
