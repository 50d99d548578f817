"""What every server process of the test suite shares: free ports, bounded waits, and a clean stop.

Every child process started here is stopped at the owner's ``stop()`` and, as a last resort, when the
interpreter exits (``atexit``); on Linux a child started from the main thread is also sent SIGTERM by the
kernel if the test process dies without running its exit handlers.
"""

from __future__ import annotations

import atexit
import ctypes
import http.client
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from typing_extensions import Self

LOOPBACK = "127.0.0.1"
POLL_INTERVAL = 0.02


class Stoppable(Protocol):
    def stop(self) -> None: ...


_LIVE: weakref.WeakSet[Stoppable] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def track(server: Stoppable) -> None:
    """Remember ``server`` so that it is stopped at interpreter exit if its owner forgets."""
    with _LIVE_LOCK:
        _LIVE.add(server)


def untrack(server: Stoppable) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(server)


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago: bind port 0 on ``host`` and read what the kernel chose."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = POLL_INTERVAL) -> bool:
    """Call ``predicate`` every ``interval`` seconds until it is true or ``timeout`` elapsed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stop_on_signals() -> threading.Event:
    """An event that SIGINT and SIGTERM set from now on, instead of raising ``KeyboardInterrupt``.

    The foreground commands (``python -m tests.servers.registry`` and the others) install it before they
    start anything, so a signal at any moment - during start-up, while printing, while serving, a second
    Ctrl-C during the stop - ends in a clean stop. It also replaces an inherited ``SIG_IGN`` (a command
    started in the background by a non-interactive shell ignores SIGINT)."""
    stop = threading.Event()

    def _set(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _set)
    signal.signal(signal.SIGINT, _set)
    return stop


def serve_until(stop: threading.Event, running: Callable[[], bool] = lambda: True) -> None:
    """Block until ``stop`` is set or ``running()`` turns false (the server process died)."""
    while not stop.wait(POLL_INTERVAL * 4) and running():
        pass


def tail(path: Path, limit: int = 4000) -> str:
    """The last ``limit`` characters of a log file (empty when it does not exist)."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


try:  # resolved in the parent: the child only calls it (no dlopen between fork and exec)
    _PRCTL: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _PRCTL = None


def _parent_death_signal() -> None:  # pragma: no cover - runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG: SIGTERM when the parent (thread) dies


def clean_env(strip_prefixes: Sequence[str] = ()) -> dict[str, str]:
    """A copy of the environment without variables that start with any of ``strip_prefixes``."""
    return {k: v for k, v in os.environ.items() if not any(k.startswith(p) for p in strip_prefixes)}


def spawn(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log_path`` (a file, so a pipe never fills)."""
    with open(log_path, "ab") as log:
        use_pdeathsig = _PRCTL is not None and threading.current_thread() is threading.main_thread()
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, cwd=cwd, close_fds=True,
            preexec_fn=_parent_death_signal if use_pdeathsig else None,
        )


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = 5.0,
              sig: int = signal.SIGTERM) -> None:
    """Stop ``process``: ``sig`` first, SIGKILL if it is still alive after ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        if process is not None:
            process.wait()
        return
    try:
        process.send_signal(sig)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
    except ProcessLookupError:
        process.wait()


def probe(port: int, path: str, statuses: Sequence[int], context: ssl.SSLContext | None = None,
          host_header: str | None = None) -> bool:
    """Whether ``GET path`` on ``127.0.0.1:port`` answers one of ``statuses`` within a second."""
    connection: http.client.HTTPConnection
    if context is not None:
        connection = http.client.HTTPSConnection(LOOPBACK, port, timeout=1, context=context)
    else:
        connection = http.client.HTTPConnection(LOOPBACK, port, timeout=1)
    try:
        connection.request("GET", path, headers={"Host": host_header} if host_header else {})
        response = connection.getresponse()
        response.read()
        return response.status in statuses
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()



class ServerProcess:
    """A server child process on a free port of 127.0.0.1, with its own temporary directory.

    Subclasses say how to launch one attempt (:meth:`_launch`), when it serves (:meth:`_probe`), which
    log line means the port was taken meanwhile (``PORT_TAKEN``) and which error to raise (``ERROR``);
    this class picks the port, retries a taken one, waits boundedly, and stops everything on failure.
    """

    NAME = "server"
    PORT_TAKEN = "address already in use"  # matched case-insensitively in the log tail
    ERROR: type[Exception] = RuntimeError

    def __init__(self, start_timeout: float) -> None:
        self.start_timeout = start_timeout
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "http"

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _make_directory(self, prefix: str) -> Path:
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        return Path(self._tmp.name)

    def _launch(self) -> subprocess.Popen[bytes]:
        """Start one attempt on ``self.port`` (config files written for that port)."""
        raise NotImplementedError

    def _probe(self) -> bool:
        """Whether the started process serves yet."""
        raise NotImplementedError

    def _log_tail(self) -> str:
        """What the process logged, for the port check and for the start-up error."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """Everything before the first attempt (directories, certificates, helper servers)."""

    def start(self) -> Self:
        """Prepare, start on a free port and wait until it serves; on any failure stop everything."""
        track(self)
        try:
            self._prepare()
            self._serve()
        except BaseException:
            self.stop()
            raise
        return self

    def _serve(self) -> None:
        # A port can be taken between choosing and binding it: 5 attempts when the log says so.
        for _attempt in range(5):
            self.port = free_port()
            self._process = child = self._launch()

            def settled(child: subprocess.Popen[bytes] = child) -> bool:  # serving, or dead
                return child.poll() is not None or self._probe()

            if wait_until(settled, self.start_timeout) and child.poll() is None:
                return
            log = self._log_tail()
            terminate(child)
            if self.PORT_TAKEN.lower() not in log.lower():
                break
        raise self.ERROR(f"{self.NAME} did not become ready within {self.start_timeout}s; log tail:\n"
                         f"{self._log_tail()}")

    def _stopped(self) -> None:
        """Hook: stop what the server owns besides its process (called by :meth:`stop`)."""

    def stop(self) -> None:
        """Stop the process (SIGTERM, SIGKILL after 5 s), what it owns, and remove its directory."""
        terminate(self._process)
        self._process = None
        self._stopped()
        untrack(self)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
