"""Child processes of the local environment: logs kept, health waited on, never left behind."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import random
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from tailor_localenv.progress import duration, say

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()
_STARTS = itertools.count()


class StartError(RuntimeError):
    """A component did not become healthy; the message carries the tail of its log."""


_HANDED_OUT: set[int] = set()
_FIRST_PORT = 10000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port nothing listens on, below the kernel's ephemeral range: a port from that
    range can be taken by any outgoing connection (a Kafka client's, say) between the moment
    it is picked and the moment the server that was given it binds it."""
    end = _ephemeral_start()
    rng = random.SystemRandom()
    for _ in range(200 if end > _FIRST_PORT + 1000 else 0):
        port = rng.randrange(_FIRST_PORT, end)
        if port in _HANDED_OUT:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("0.0.0.0", port))
        except OSError:
            continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        fallback: int = sock.getsockname()[1]
        return fallback


def http_get(
    url: str, context: ssl.SSLContext | None = None, timeout: float = 3.0
) -> tuple[int, bytes]:
    """GET ``url`` and return (status, body). Closes the connection on every path: an
    HTTPError carries the open socket, which would otherwise leak once per probe while a
    server starts (and surface later as a ResourceWarning in whatever runs the GC)."""
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def http_ok(url: str, context: ssl.SSLContext | None = None, timeout: float = 3.0) -> bool:
    """True when ``url`` answers 200."""
    return http_get(url, context, timeout)[0] == 200


def ready_on(port: int) -> bool:
    """True when a pipeline program on 127.0.0.1:``port`` answers /readyz with 200; False
    while it is not listening yet (a process that is still starting)."""
    try:
        return http_ok(f"http://127.0.0.1:{port}/readyz")
    except OSError:
        return False


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the test runner or demo is killed with
    # SIGKILL, atexit never runs, so ask the kernel to SIGTERM the child when its parent dies.
    # Linux only; elsewhere we rely on atexit and the process group. The kernel ties this to
    # the *thread* that forked: start processes from threads that outlive them (a finished
    # ThreadPoolExecutor worker takes its children with it).
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedProcess:
    """One long-running component with its own log file and process group."""

    def __init__(
        self,
        name: str,
        args: Sequence[str | os.PathLike[str]],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = [str(a) for a in args]
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._order = 0

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.args)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        with _LIVE_LOCK:
            self._order = next(_STARTS)
            _LIVE.add(self)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        """None while it runs (or before it started)."""
        return self._proc.poll() if self._proc is not None else None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(
        self, check: Callable[[], bool], timeout: float, what: str = "healthy"
    ) -> float:
        """Poll ``check`` until it is true; fail early with the log if the process exits."""
        started = time.monotonic()
        deadline = started + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                code = self._proc.returncode if self._proc else None
                raise StartError(
                    f"{self.name} exited with code {code} before it was {what}; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if check():
                    return time.monotonic() - started
            except Exception as exc:
                last_error = exc
            time.sleep(0.2)
        raise StartError(
            f"{self.name} was not {what} after {duration(timeout)} (last probe error: "
            f"{last_error!r}); last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``grace`` seconds."""
        proc = self._proc
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            say(f"{self.name} ignored SIGTERM for {duration(grace)}; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: for tests of what survives one."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        with _LIVE_LOCK:
            _LIVE.discard(self)


def stop_all() -> None:
    """Stop every process still running, newest first (dependents before what they need)."""
    with _LIVE_LOCK:
        live = sorted(_LIVE, key=lambda p: p._order, reverse=True)
    for proc in live:
        proc.stop(grace=5.0)


atexit.register(stop_all)


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll until ``predicate`` returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
