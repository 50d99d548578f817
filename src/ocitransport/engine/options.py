"""Pooled easy handles and the libcurl options set on them: static per engine, per transfer only when
they changed since the handle's last transfer.
"""

from __future__ import annotations

import os
import socket
import ssl
from typing import Any

import pycurl

from ..exceptions import ProtocolError
from ..messages import Timeout
from .transfer import _BLANK_LIST, _BLANKS, _BUFFERED, _SINK, _STREAM, _Transfer
from .uploads import _BytesReader

#: libcurl's receive buffer (CURLOPT_BUFFERSIZE; default 16 KiB). Larger means fewer write callbacks
#: on big bodies; libcurl allocates it per transfer only while it runs.
RECV_BUFFER = 256 << 10
#: CURLOPT_UPLOAD_BUFFERSIZE (default 64 KiB, max 2 MiB): fewer read callbacks on big uploads.
SEND_BUFFER = 512 << 10
#: Distinct request header sets whose HTTPHEADER lists are kept for reuse (``Engine._header_list``).
HEADER_LISTS = 256
#: ... each at most this long in total (a registry token is 1-2 KiB).
HEADER_LIST_BYTES = 16 << 10

CURLOPT_SUPPRESS_CONNECT_HEADERS = 265  # libcurl 7.54.0; pycurl does not export the name

# Method states of a pooled handle.
_M_GET, _M_HEAD, _M_UPLOAD = 0, 1, 2


def system_ca() -> tuple[str | None, str | None]:
    """The system CA bundle file and directory (``SSL_CERT_FILE``/``SSL_CERT_DIR`` win)."""
    paths = ssl.get_default_verify_paths()
    cafile: str | None = os.environ.get("SSL_CERT_FILE") or paths.cafile or paths.openssl_cafile
    capath: str | None = os.environ.get("SSL_CERT_DIR") or paths.capath or paths.openssl_capath
    if cafile and not os.path.isfile(cafile):
        cafile = None
    if capath and not os.path.isdir(capath):
        capath = None
    if cafile is None and capath is None:
        try:
            import certifi

            cafile = str(certifi.where())
        except ImportError:
            pass
    return cafile, capath


class _Handle:
    """A pooled easy handle and the option values it currently carries."""

    __slots__ = (
        "chunks",
        "curl",
        "custom",
        "guarded",
        "has_reader",
        "headers",
        "lines",
        "method",
        "timeout",
        "url",
        "write_mode",
    )

    def __init__(self, curl: pycurl.Curl) -> None:
        self.curl = curl
        self.url = ""
        self.lines: list[bytes] = []
        self.chunks: list[bytes] = []
        self.method = _M_GET
        self.custom: str | None = None
        self.headers: Any = None
        self.timeout: Timeout | None = None
        self.write_mode = _BUFFERED
        self.has_reader = False
        self.guarded = False  # OPENSOCKETFUNCTION / PREREQFUNCTION set for an SSRF guard


class HandleOptions:
    """The handle pool of an ``Engine``: new handles, options per transfer, release, header lists."""

    timeout: Timeout
    _cap: int
    _closed: bool
    _free: list[_Handle]
    _share: Any
    _static: list[tuple[int, Any]]
    _proxy: str | None
    _header_lists: tuple[dict[tuple[Any, ...], list[str | bytes]], ...]

    def _static_options(self, verify: bool | str, cert: str | tuple[str, str] | None, proxy: str | None,
                        http2: bool, user_agent: str | None) -> list[tuple[int, Any]]:
        opts: list[tuple[int, Any]] = [
            (pycurl.NOSIGNAL, 1),  # no SIGALRM for DNS timeouts: we run in threads
            (pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS),
            (pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS),
            (pycurl.FOLLOWLOCATION, 0),  # redirects are a layer of ours (auth stripping, SSRF guard)
            (pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS if http2
             else pycurl.CURL_HTTP_VERSION_1_1),
            (pycurl.PIPEWAIT, 1 if http2 else 0),  # wait for a connection that may multiplex
            (CURLOPT_SUPPRESS_CONNECT_HEADERS, 1),  # a proxy's CONNECT reply is not the response
            (pycurl.TCP_KEEPALIVE, 1),
            (pycurl.BUFFERSIZE, RECV_BUFFER),
            (pycurl.UPLOAD_BUFFERSIZE, SEND_BUFFER),
            (pycurl.SHARE, self._share),
            (pycurl.USERAGENT, user_agent or _default_user_agent()),
        ]
        if verify is False:
            opts += [(pycurl.SSL_VERIFYPEER, 0), (pycurl.SSL_VERIFYHOST, 0)]
        elif isinstance(verify, (str, os.PathLike)):
            ca = os.fspath(verify)
            opts.append((pycurl.CAPATH if os.path.isdir(ca) else pycurl.CAINFO, ca))
        else:
            cafile, capath = system_ca()
            if cafile:
                opts.append((pycurl.CAINFO, cafile))
            if capath:
                opts.append((pycurl.CAPATH, capath))
        if cert is not None:
            if isinstance(cert, (str, os.PathLike)):
                opts.append((pycurl.SSLCERT, os.fspath(cert)))
            else:
                opts += [(pycurl.SSLCERT, os.fspath(cert[0])), (pycurl.SSLKEY, os.fspath(cert[1]))]
        if proxy is not None:
            opts.append((pycurl.PROXY, proxy))  # "" disables the *_proxy environment variables
        return opts

    def _new_handle(self) -> _Handle:
        curl = pycurl.Curl()
        for option, value in self._static:
            curl.setopt(option, value)
        h = _Handle(curl)
        curl.setopt(pycurl.HEADERFUNCTION, h.lines.append)
        curl.setopt(pycurl.WRITEFUNCTION, h.chunks.append)
        curl.setopt(pycurl.HTTPHEADER, _BLANK_LIST)
        h.headers = _BLANK_LIST
        return h

    def _configure(self, h: _Handle, t: _Transfer) -> None:
        """Set what this transfer needs on a pooled handle, touching only options that changed."""
        curl = h.curl
        request = t.request
        url = request.url
        if url != h.url:
            curl.setopt(pycurl.URL, url)
            h.url = url
        if t.header_list is not h.headers:
            curl.setopt(pycurl.HTTPHEADER, t.header_list)
            h.headers = t.header_list
        method = request.method
        reader = t.reader
        if reader is not None:
            if h.method != _M_UPLOAD:
                curl.setopt(pycurl.UPLOAD, 1)
                h.method = _M_UPLOAD
            custom: str | None = None if method == "PUT" else method
            curl.setopt(pycurl.READFUNCTION, reader.read)
            if isinstance(reader, _BytesReader):
                curl.setopt(pycurl.SEEKFUNCTION, reader.seek)
            elif h.has_reader:
                curl.setopt(pycurl.SEEKFUNCTION, None)
            curl.setopt(pycurl.INFILESIZE_LARGE, t.body_size)
            h.has_reader = True
        elif method == "GET":
            if h.method != _M_GET:
                curl.setopt(pycurl.HTTPGET, 1)  # also clears NOBODY and UPLOAD
                h.method = _M_GET
            custom = None
        elif method == "HEAD":
            if h.method != _M_HEAD:
                curl.setopt(pycurl.NOBODY, 1)
                h.method = _M_HEAD
            custom = None
        else:
            if h.method != _M_GET:
                curl.setopt(pycurl.HTTPGET, 1)
                h.method = _M_GET
            custom = method
        if custom != h.custom:
            curl.setopt(pycurl.CUSTOMREQUEST, custom)
            h.custom = custom
        timeout = t.timeout
        if timeout is not h.timeout:
            if h.timeout is None or timeout != h.timeout:
                _set_timeouts(curl, timeout)
            h.timeout = timeout
        mode = t.mode
        if mode == _BUFFERED:
            if h.write_mode != _BUFFERED:  # a buffered body is digested once at the end
                curl.setopt(pycurl.WRITEFUNCTION, h.chunks.append)
                h.write_mode = _BUFFERED
        elif mode == _STREAM:
            assert t.stream is not None and t.lines is not None
            curl.setopt(pycurl.WRITEFUNCTION, t.stream._on_write)
            curl.setopt(pycurl.HEADERFUNCTION, t.lines.append)
            h.write_mode = _STREAM
        else:
            curl.setopt(pycurl.WRITEFUNCTION, t.on_sink)
            h.write_mode = _SINK
        ext = request.extensions
        guard = ext.get("address_guard") if ext else None
        if guard is not None or h.guarded:
            self._set_guard(h, t, guard)

    def _set_guard(self, h: _Handle, t: _Transfer, guard: Any) -> None:
        """Check the address libcurl connects to before a byte of the request is sent (SSRF guard).

        OPENSOCKETFUNCTION sees every address of a new connection before ``connect()``: a refused one
        gets ``CURL_SOCKET_BAD``, so nothing reaches it (libcurl tries the name's other addresses).
        PREREQFUNCTION sees the address of the connection the request really goes out on, also a
        pooled one (libcurl's pool is keyed by host name and port, not by the guard that opened it).
        Set only on guarded requests and removed when the pooled handle serves an unguarded one.
        Through a proxy the address is the proxy's: the guard then stays with the URL's spelling."""
        curl = h.curl
        if guard is None or self._proxied(t.request.url):
            curl.setopt(pycurl.OPENSOCKETFUNCTION, None)
            curl.setopt(pycurl.PREREQFUNCTION, None)
            h.guarded = False
            return

        def opensocket(purpose: int, address: Any) -> Any:
            reason = guard.refusal(address.addr[0])
            if reason is not None:
                t.refused = reason
                return pycurl.SOCKET_BAD
            return socket.socket(address.family, address.socktype, address.protocol)  # pycurl dups it

        def prereq(primary_ip: str, local_ip: str, primary_port: int, local_port: int) -> int:
            reason = guard.refusal(primary_ip)
            t.refused = reason  # None: connected to an allowed address (another one may have been refused)
            if reason is not None:
                return pycurl.PREREQFUNC_ABORT  # type: ignore[no-any-return]
            return pycurl.PREREQFUNC_OK  # type: ignore[no-any-return]

        curl.setopt(pycurl.OPENSOCKETFUNCTION, opensocket)
        curl.setopt(pycurl.PREREQFUNCTION, prereq)
        h.guarded = True

    def _proxied(self, url: str) -> bool:
        """Whether libcurl sends ``url`` through a proxy (the engine's, or ``*_proxy`` variables)."""
        if self._proxy is not None:
            return self._proxy != ""
        import urllib.request

        proxies = urllib.request.getproxies_environment()
        scheme = url.partition(":")[0].lower()
        if not (proxies.get(scheme) or proxies.get("all")):
            return False
        from .._urls import origin

        return not urllib.request.proxy_bypass_environment(origin(url)[1], proxies)  # type: ignore[attr-defined]

    def _release(self, h: _Handle, t: _Transfer) -> None:
        """Back to the free list, dropping references to this transfer's objects."""
        h.lines.clear()
        h.chunks.clear()
        curl = h.curl
        if h.write_mode != _BUFFERED:
            curl.setopt(pycurl.WRITEFUNCTION, h.chunks.append)
            if h.write_mode == _STREAM:
                curl.setopt(pycurl.HEADERFUNCTION, h.lines.append)
            h.write_mode = _BUFFERED
        if h.has_reader:
            curl.setopt(pycurl.READFUNCTION, None)
            curl.setopt(pycurl.SEEKFUNCTION, None)
            h.has_reader = False
        t.handle = None
        if len(self._free) < self._cap and not self._closed:
            self._free.append(h)
        else:
            curl.close()

    def _header_list(self, items: list[tuple[str, str]], has_body: bool) -> list[str | bytes]:
        """The HTTPHEADER list for these headers, one shared list per distinct header set.

        Layers build a new ``Headers`` per request, but the lines are mostly the same every time (the
        same token, user agent, accept list); handing the same list object back lets ``_configure``
        skip the HTTPHEADER setopt (a curl_slist rebuilt per request) on a pooled handle that carries
        it already, and skips building the lines.
        """
        cache = self._header_lists[has_body]
        try:
            key = tuple(items)
            found = cache.get(key)
        except TypeError:  # an unhashable value someone put in Headers: build it every time
            return _header_list(items, has_body)
        if found is None:
            found = _header_list(items, has_body)
            if sum(map(len, found)) <= HEADER_LIST_BYTES:  # huge header sets are built each time
                if len(cache) >= HEADER_LISTS:
                    cache.clear()  # tokens rotate, ranges differ: a bounded cache, rebuilt as it goes
                cache[key] = found
        return found


_TIMING = (("namelookup", pycurl.NAMELOOKUP_TIME), ("connect", pycurl.CONNECT_TIME),
           ("appconnect", pycurl.APPCONNECT_TIME), ("pretransfer", pycurl.PRETRANSFER_TIME),
           ("starttransfer", pycurl.STARTTRANSFER_TIME), ("total", pycurl.TOTAL_TIME))


def _timing(curl: pycurl.Curl) -> dict[str, float | int]:
    """libcurl's timings in seconds from the start of the transfer, and ``new_connections``
    (0 when a pooled connection was reused); asked for with ``extensions={"timing": True}``."""
    out: dict[str, float | int] = {}
    try:
        for name, info in _TIMING:
            out[name] = curl.getinfo(info)
        out["new_connections"] = curl.getinfo(pycurl.NUM_CONNECTS)
    except pycurl.error:
        pass
    return out


def _set_timeouts(curl: pycurl.Curl, timeout: Timeout) -> None:
    # connect and total are libcurl's; first_byte, stall and min_rate the engine's (_check_stalls).
    curl.setopt(pycurl.CONNECTTIMEOUT_MS, 0 if timeout.connect is None else max(1, int(timeout.connect * 1000)))
    curl.setopt(pycurl.TIMEOUT_MS, 0 if timeout.total is None else max(1, int(timeout.total * 1000)))


def _rate(bytes_per_second: float) -> str:
    """``1024.0`` -> ``"1 KiB/s"``; ``1536.0`` -> ``"1.5 KiB/s"``; ``100.0`` -> ``"100 bytes/s"``."""
    for unit, size in (("MiB/s", 1 << 20), ("KiB/s", 1 << 10)):
        if bytes_per_second >= size:
            return f"{bytes_per_second / size:g} {unit}"
    return f"{bytes_per_second:g} bytes/s"


def _header_list(items: list[tuple[str, str]], has_body: bool) -> list[str | bytes]:
    out: list[str | bytes] = []
    for name, value in items:
        if has_body:
            lower = name.lower()
            if lower == "content-length" or lower == "transfer-encoding":
                continue  # libcurl frames the body itself (INFILESIZE or chunked)
        line = f"{name}: {value}" if value else f"{name};"  # "Name;" sends an empty value
        if "\r" in line or "\n" in line or "\0" in line:
            raise ProtocolError(f"header {name!r} contains a line break or NUL")
        if not line.isascii():
            # pycurl takes str only as ASCII; HTTP header bytes are latin-1 (UTF-8 beyond that).
            try:
                out.append(line.encode("latin-1"))
            except UnicodeEncodeError:
                out.append(line.encode("utf-8"))
            continue
        out.append(line)
    out += _BLANKS  # blank "Name:" lines only remove libcurl's defaults; a caller's own value stays
    return out


def _default_user_agent() -> str:
    from .. import __version__

    return f"ocitransport/{__version__}"
