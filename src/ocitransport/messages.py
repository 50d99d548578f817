"""Request, Response, Headers and Timeout: the small value types every layer passes around."""

from __future__ import annotations

import io
import json as _json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Protocol, Union

if TYPE_CHECKING:
    from typing import BinaryIO

HeaderSource = Union["Headers", Mapping[str, str], Iterable[tuple[str, str]], None]
#: What a request body may be: nothing, bytes, a binary file, or an (async) iterator of bytes chunks.
Body = Union[None, bytes, bytearray, memoryview, "BinaryIO", Iterable[bytes], AsyncIterable[bytes]]


class Headers:
    """Case-insensitive, multi-valued, order-preserving HTTP headers.

    Stored as a list of ``(name, value)`` pairs in arrival order with the names as sent. Lookups scan
    the list (registry responses carry a dozen headers; a scan is cheaper than building a dict for
    every response). ``headers[name]`` joins repeated values with ``", "``; ``get_all`` returns them apart.
    """

    __slots__ = ("_items",)

    def __init__(self, items: HeaderSource = None) -> None:
        if items is None:
            self._items: list[tuple[str, str]] = []
        elif isinstance(items, Headers):
            self._items = list(items._items)
        elif isinstance(items, Mapping):
            self._items = [(str(k), str(v)) for k, v in items.items()]
        else:
            self._items = [(str(k), str(v)) for k, v in items]

    @classmethod
    def _from_list(cls, items: list[tuple[str, str]]) -> Headers:
        """Adopt a freshly parsed list without copying (the response-head parser's output)."""
        h = cls.__new__(cls)
        h._items = items
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower()
        found = [v for k, v in self._items if k.lower() == key]
        if not found:
            return default
        return found[0] if len(found) == 1 else ", ".join(found)

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self._items if k.lower() == key]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(k.lower() == key for k, _ in self._items)

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value``."""
        key = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != key]
        self._items.append((name, value))

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        kept = [(k, v) for k, v in self._items if k.lower() != key]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self._items = kept

    def pop(self, name: str, default: str | None = None) -> str | None:
        value = self.get(name, default)
        key = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != key]
        return value

    def add(self, name: str, value: str) -> None:
        """Append one more value for ``name``, keeping those already there."""
        self._items.append((name, value))

    def setdefault(self, name: str, value: str) -> str:
        current = self.get(name)
        if current is None:
            self._items.append((name, value))
            return value
        return current

    def update(self, other: HeaderSource) -> None:
        for k, v in Headers(other)._items:
            self[k] = v

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair in order, repeats included."""
        return list(self._items)

    def keys(self) -> list[str]:
        seen: dict[str, str] = {}
        for k, _ in self._items:
            seen.setdefault(k.lower(), k)
        return list(seen.values())

    def copy(self) -> Headers:
        return Headers._from_list(list(self._items))

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            mine, theirs = self._items, other._items
        elif isinstance(other, Mapping):
            mine, theirs = self._items, list(other.items())
        else:
            return NotImplemented
        return sorted((k.lower(), v) for k, v in mine) == sorted((k.lower(), v) for k, v in theirs)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        # Secret-bearing values never reach a repr.
        from ._redaction import redact_headers

        return f"Headers({redact_headers(self._items)!r})"


@dataclass(frozen=True)
class Timeout:
    """Per-request time limits in seconds; ``None`` means no limit. Each error names the limit that fired.

    ``connect`` (30 s): establishing the connection, TCP and TLS (``Timeout.connect``).
    ``first_byte`` (``None``: the ``stall`` value, 30 s): from the request sent - its body included, a
    body still going out never counts - to the first byte of the response head (``Timeout.first_byte``).
    ``stall`` (30 s): while a body moves either way, no byte sent or received for this long
    (``Timeout.stall``). ``None`` turns off the body limits, ``min_rate`` included (and, with
    ``first_byte`` unset, the head limit too): the meaning it had when it was libcurl's low-speed limit.
    ``min_rate`` (1024 bytes/s): a body moving slower than this on average over a window of
    ``rate_period`` (30 s) seconds fails; the first window starts when the body does (a grace period),
    so a trickle of a byte or two a second ends after ``rate_period`` s (``Timeout.min_rate``).
    ``total``: the whole transfer (``Timeout.total``). ``pool``: how long a request may wait for a free
    connection slot. Time that we paused a transfer ourselves (a slow consumer, an empty async body
    source) counts towards none of them. One request's worst case is about ``connect + first_byte``
    plus its body at ``min_rate``; the retry layer multiplies that by its attempts.
    """

    connect: float | None = 30.0
    total: float | None = None
    stall: float | None = 30.0
    pool: float | None = None
    first_byte: float | None = None
    min_rate: float | None = 1024.0
    rate_period: float = 30.0

    @property
    def head_limit(self) -> float | None:
        """The effective time-to-first-byte limit: ``first_byte``, else ``stall``."""
        return self.stall if self.first_byte is None else self.first_byte


DEFAULT_TIMEOUT = Timeout()


class Request:
    """One HTTP request as the layers see it.

    ``body`` may be bytes, a binary file, or an (async) iterator of bytes. Bytes and seekable files are
    *replayable*: every re-send (retry, new token, redirect 307/308) starts from the position the file had
    when the request was made. Iterators can be sent once.

    ``stream=True`` leaves the response body unread for the caller to consume (``Response.iter_bytes``);
    otherwise the body is read into ``Response.content``. ``extensions`` carries per-request options
    for inner layers (for example ``"sha256": True`` to digest the response body while it streams,
    ``"sink"`` to write it to a file, ``"connect_timeout"`` for a shorter connect limit on this request).
    """

    __slots__ = ("method", "url", "headers", "body", "timeout", "stream", "extensions", "_body_start")

    def __init__(
        self,
        method: str,
        url: str,
        headers: HeaderSource = None,
        body: Body = None,
        *,
        timeout: Timeout | None = None,
        stream: bool = False,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        if isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        elif isinstance(body, str):
            raise TypeError("request body must be bytes, a binary file or an iterator of bytes, not str")
        self.body = body
        self.timeout = timeout
        self.stream = stream
        self.extensions: dict[str, Any] = {} if extensions is None else extensions
        self._body_start: int | None = None
        if body is not None and not isinstance(body, bytes) and hasattr(body, "read"):
            try:
                self._body_start = body.seek(0, io.SEEK_CUR)  # type: ignore[union-attr]
            except (OSError, AttributeError, ValueError):
                self._body_start = None

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent again (no body, bytes, or a seekable file)."""
        return self.body is None or isinstance(self.body, bytes) or self._body_start is not None

    def rewind(self) -> None:
        """Put a file body back where it started; a no-op for bytes and empty bodies."""
        if self._body_start is not None:
            self.body.seek(self._body_start)  # type: ignore[union-attr]

    def copy(self, *, url: str | None = None, method: str | None = None,
             headers: HeaderSource = None, body: Body | EllipsisType = ...) -> Request:
        """A new request sharing the body (and its replay position) unless replaced."""
        new = Request.__new__(Request)
        new.method = self.method if method is None else method
        new.url = self.url if url is None else url
        new.headers = self.headers.copy() if headers is None else Headers(headers)
        new.timeout = self.timeout
        new.stream = self.stream
        new.extensions = self.extensions
        if body is ...:
            new.body = self.body
            new._body_start = self._body_start
        else:
            new.body = bytes(body) if isinstance(body, (bytearray, memoryview)) else body
            new._body_start = None
        return new

    def with_header(self, name: str, value: str, key: str = "") -> Request:
        """A copy with ``name`` set to ``value``: the old values of ``name`` (any case) dropped, the new
        one last; the original request is left untouched.

        Layers call this on every request, so it makes one header-list copy and fills the slots
        directly (``copy()`` then ``headers[name] = value`` would copy the list twice). ``key`` is
        ``name.lower()`` when the caller has it at hand.
        """
        items = self.headers._items
        if items:
            key = key or name.lower()
            kept = [pair for pair in items if pair[0].lower() != key]
            kept.append((name, value))
        else:
            kept = [(name, value)]
        headers = _new_headers(Headers)
        headers._items = kept
        new = _new_request(Request)
        new.method = self.method
        new.url = self.url
        new.headers = headers
        new.body = self.body
        new.timeout = self.timeout
        new.stream = self.stream
        new.extensions = self.extensions
        new._body_start = self._body_start
        return new

    def __repr__(self) -> str:
        from ._redaction import redact_url

        return f"<Request {self.method} {redact_url(self.url)}>"


_new_request = Request.__new__
_new_headers = Headers.__new__
#: Every slot of ``Request``, as ``with_header`` fills them one by one (a test checks the list is complete).
REQUEST_SLOTS = ("method", "url", "headers", "body", "timeout", "stream", "extensions", "_body_start")


class ResponseStream(Protocol):
    """The engine's handle on a response body that is still arriving."""

    def read(self, n: int = -1) -> bytes: ...
    def __iter__(self) -> Iterator[bytes]: ...
    async def aread(self, n: int = -1) -> bytes: ...
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    def close(self) -> None: ...


class Response:
    """One HTTP response: status line, headers, and a body that is either read or still streaming."""

    __slots__ = ("status", "reason", "http_version", "headers", "url", "request", "elapsed",
                 "extensions", "_content", "_stream")

    def __init__(
        self,
        status: int,
        headers: HeaderSource = None,
        content: bytes | None = b"",
        *,
        reason: str = "",
        http_version: str = "HTTP/1.1",
        url: str = "",
        request: Request | None = None,
        elapsed: float = 0.0,
        stream: ResponseStream | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.reason = reason
        self.http_version = http_version
        self.url = url
        self.request = request
        self.elapsed = elapsed
        self.extensions: dict[str, Any] = {} if extensions is None else extensions
        self._stream = stream
        self._content = None if stream is not None else content

    @property
    def status_code(self) -> int:
        """Alias of ``status`` for code written against requests or httpx."""
        return self.status

    @property
    def is_streaming(self) -> bool:
        """True while the body has not been read into memory yet."""
        return self._content is None

    @property
    def content(self) -> bytes:
        """The whole body. For a streamed response it must have been read first (``read()``)."""
        if self._content is None:
            raise RuntimeError("the response body is streaming; call read() or iterate it first")
        return self._content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return _json.loads(self.content)

    def read(self) -> bytes:
        """Read the rest of the body into memory (blocking) and return it."""
        if self._content is None:
            assert self._stream is not None
            self._content = self._stream.read()
            self._stream.close()
        return self._content

    async def aread(self) -> bytes:
        if self._content is None:
            assert self._stream is not None
            self._content = await self._stream.aread()
            self._stream.close()
        return self._content

    def iter_bytes(self) -> Iterator[bytes]:
        """Yield the body in chunks as they arrive (or the read body as one chunk)."""
        if self._content is not None:
            if self._content:
                yield self._content
            return
        assert self._stream is not None
        try:
            yield from self._stream
        finally:
            self._stream.close()

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        if self._content is not None:
            if self._content:
                yield self._content
            return
        assert self._stream is not None
        try:
            async for chunk in self._stream:
                yield chunk
        finally:
            self._stream.close()

    def close(self) -> None:
        """Stop receiving the body (if it is still streaming) and release the connection."""
        if self._stream is not None:
            self._stream.close()
            if self._content is None:
                self._content = b""

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Response [{self.status}]>"
