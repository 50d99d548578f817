"""A link shaper: a TCP proxy on 127.0.0.1 that puts its upstream far away (the kernel here has no netem).

Every chunk read from one side is delivered to the other ``delay`` seconds later (one-way delay, in each
direction), without serialising chunks: a reader thread per direction stamps each chunk with its
delivery time and a writer thread sends it then, so a connection sees one round trip of ``2 * delay``
and concurrent chunks travel together, as on a real link. ``rate`` (bytes/s, per connection and
direction; 0: none) paces the writer, a bandwidth cap.

``record=True`` keeps the bytes clients sent upstream (``sent``, at most ``record_limit`` bytes): put the
shaper in front of the storage server and the tests can show what reached it.

Standalone: ``python -m tests.servers.shaper UPSTREAM_PORT --delay 0.05`` prints its port and runs
until Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import socket
import threading
import time

from tests.servers import process
from tests.servers.listener import SocketServer

_CHUNK = 1 << 16
#: Chunks waiting in one direction before the reader stops reading (back-pressure, bounded memory).
_MAX_QUEUED = 256


class _Pipe:
    """One direction of one connection: reader stamps, writer delivers at the stamped time."""

    def __init__(self, shaper: LinkShaper, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        self.shaper, self.source, self.sink, self.upstream = shaper, source, sink, upstream
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.cond = threading.Condition()
        self.done = False

    def read(self) -> None:
        try:
            while not self.shaper._stopping.is_set():
                data = self.source.recv(_CHUNK)
                if not data:
                    break
                if self.upstream:
                    self.shaper._note(data)
                with self.cond:
                    # Bounded wait for room: each pass is short, the stop event ends it.
                    while len(self.queue) >= _MAX_QUEUED and not self.shaper._stopping.is_set():
                        self.cond.wait(0.05)
                    self.queue.append((time.monotonic() + self.shaper.delay, data))
                    self.cond.notify_all()
        except OSError:
            pass
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def write(self) -> None:
        free_at = 0.0  # when the link is free again after the bytes already sent (pacing)
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.done and not self.shaper._stopping.is_set():
                        self.cond.wait(0.05)
                    if not self.queue:
                        break
                    due, data = self.queue.popleft()
                    self.cond.notify_all()
                now = time.monotonic()
                ready = max(due, free_at)
                if self.shaper.rate > 0:
                    # Pacing: a chunk is handed on once its last byte would have crossed at ``rate``
                    # (its serialisation time after the link became free), so N bytes take N / rate.
                    ready = max(ready, now) + len(data) / self.shaper.rate
                    free_at = ready
                wait = ready - now
                if wait > 0 and self.shaper._stopping.wait(wait):
                    break
                self.sink.sendall(data)
            self.sink.shutdown(socket.SHUT_WR)  # pass the half-close on, after the delayed bytes
        except OSError:
            pass


class LinkShaper(SocketServer):
    """A delaying, optionally rate-limited TCP proxy to ``upstream_host:upstream_port``.

    ``delay``: one-way delay in seconds (each direction); ``rate``: bytes/s per connection and
    direction, 0 for no cap. Both may be changed while it runs (new chunks use the new values).
    ``connections`` counts accepted connections; ``sent`` holds what clients sent (``record=True``).
    """

    name = "shaper"

    def __init__(self, upstream_host: str, upstream_port: int, *, delay: float = 0.0, rate: int = 0,
                 record: bool = False, record_limit: int = 64 << 20) -> None:
        super().__init__(process.LOOPBACK, idle_timeout=60)
        if delay < 0 or rate < 0:
            raise ValueError("delay and rate must not be negative")
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.delay, self.rate = delay, rate
        self.record, self.record_limit = record, record_limit
        self.connections = 0
        self._sent = bytearray()

    @property
    def host(self) -> str:
        return f"{process.LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def sent(self) -> bytes:
        """Every byte clients sent upstream since the start or the last :meth:`clear` (when recording)."""
        with self._lock:
            return bytes(self._sent)

    def clear(self) -> None:
        with self._lock:
            self._sent.clear()

    def _note(self, data: bytes) -> None:
        if self.record:
            with self._lock:
                room = self.record_limit - len(self._sent)
                if room > 0:
                    self._sent += data[:room]

    def _admit(self, sock: socket.socket) -> int | None:
        with self._lock:
            self.connections += 1
            return self.connections

    def _serve(self, client: socket.socket, number: int) -> None:
        try:
            upstream = socket.create_connection((self.upstream_host, self.upstream_port), timeout=10)
        except OSError:
            return
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream.settimeout(self.idle_timeout)
        with self._lock:
            self._sockets.add(upstream)
        pipes = (_Pipe(self, client, upstream, True), _Pipe(self, upstream, client, False))
        threads = [threading.Thread(target=fn, daemon=True, name=f"{self.name}-{self.port}-{number}-{i}")
                   for i, fn in enumerate((pipes[0].read, pipes[0].write, pipes[1].read, pipes[1].write))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                # Each pipe ends on EOF, an error or the stop (which cuts every socket): bounded by
                # idle_timeout at worst.
                thread.join(self.idle_timeout + 5)
        finally:
            with self._lock:
                self._sockets.discard(upstream)
            upstream.close()


def main(argv: list[str] | None = None) -> int:
    """Run a shaper in the foreground in front of ``127.0.0.1:UPSTREAM_PORT``."""
    parser = argparse.ArgumentParser(prog="python -m tests.servers.shaper", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("upstream_port", type=int)
    parser.add_argument("--delay", type=float, default=0.05, help="one-way delay in seconds (0.05)")
    parser.add_argument("--rate", type=int, default=0, help="bytes/s per connection and direction (0: none)")
    args = parser.parse_args(argv)
    stop = process.stop_on_signals()
    with LinkShaper(process.LOOPBACK, args.upstream_port, delay=args.delay, rate=args.rate) as shaper:
        print(f"shaper: {shaper.url} -> {process.LOOPBACK}:{args.upstream_port} "
              f"(delay {args.delay * 1000:.0f} ms each way, rate {args.rate or 'unlimited'})", flush=True)
        process.serve_until(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
