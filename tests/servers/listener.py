"""The socket plumbing the fault server and the fault proxy share: a loopback listener, an accept
thread, one thread per connection, and a stop that cuts every connection and joins every thread
within a bounded time. Subclasses say what a connection gets (:meth:`SocketServer._serve`) and may
refuse one as it arrives (:meth:`SocketServer._admit`)."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

from tests.servers import process

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    from typing_extensions import Self


class SocketServer:
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`; ``port`` is known once started."""

    #: Thread names: ``<name>-<port>`` and ``<name>-<port>-conn-<n>``.
    name = "server"

    def __init__(self, bind_host: str = process.LOOPBACK, idle_timeout: float = 30.0) -> None:
        self.bind_host = bind_host
        self.idle_timeout = idle_timeout
        self.port = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()

    def start(self) -> Self:
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.bind_host, 0))
        listener.listen(512)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"{self.name}-{self.port}",
                                               daemon=True)
        self._accept_thread.start()
        process.track(self)
        return self

    def stop(self) -> None:
        """Stop accepting, cut every open connection, and join the threads (bounded)."""
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._cut_all()
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + 5
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        process.untrack(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _cut_all(self) -> None:
        """Shut down every open connection (their threads then finish)."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _admit(self, sock: socket.socket) -> int | None:
        """A new connection's number, or ``None`` when it is refused (then it is already closed)."""
        raise NotImplementedError

    def _serve(self, sock: socket.socket, number: int) -> None:
        """Serve one connection until it ends (on its own thread); the socket is closed by the caller."""
        raise NotImplementedError

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            number = self._admit(sock)
            if number is None:
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.idle_timeout)
            thread = threading.Thread(target=self._connection, args=(sock, number), daemon=True,
                                      name=f"{self.name}-{self.port}-conn-{number}")
            with self._lock:
                self._sockets.add(sock)
                self._threads.add(thread)
            thread.start()

    def _connection(self, sock: socket.socket, number: int) -> None:
        try:
            self._serve(sock, number)
        finally:
            try:
                sock.close()
            except OSError:
                pass
            with self._lock:
                self._sockets.discard(sock)
                self._threads.discard(threading.current_thread())
