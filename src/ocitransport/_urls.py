"""URL pieces the layers need on every request: scheme, host and port, without a full parse.

``urllib.parse.urlsplit`` costs a few microseconds; the layers only need the origin, so it is cut out
of the string by hand and cached for the handful of distinct origins a client talks to.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=512)
def split_authority(authority: str, scheme: str) -> tuple[str, int]:
    """``"Host:5000"`` -> ``("host", 5000)``; default port from ``scheme``; IPv6 brackets removed."""
    host = authority.rpartition("@")[2]
    port: int | None = None
    if host.startswith("["):
        end = host.find("]")
        if end != -1:
            rest = host[end + 1:]
            host = host[1:end]
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
    elif host.count(":") == 1:
        name, _, p = host.partition(":")
        if p.isdigit():
            host, port = name, int(p)
        elif p == "":
            host = name
    if port is None:
        port = DEFAULT_PORTS.get(scheme, 0)
    return host.lower(), port


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an absolute URL, lower-cased, default ports filled in."""
    start = url.find("://")
    if start == -1:
        return "", "", 0
    end = url.find("/", start + 3)
    return _origin_of(url if end == -1 else url[:end])


@lru_cache(maxsize=1024)
def _origin_of(prefix: str) -> tuple[str, str, int]:
    # ``prefix`` is "scheme://authority" (maybe with a query or fragment when the URL has no path):
    # a client talks to a handful of origins, so this runs a handful of times.
    scheme, _, rest = prefix.partition("://")
    scheme = scheme.lower()
    for ch in "?#":
        rest = rest.partition(ch)[0]
    host, port = split_authority(rest, scheme)
    return scheme, host, port


def authority(url: str) -> str:
    """The ``host[:port]`` part of a URL as written (userinfo removed)."""
    _, sep, rest = url.partition("://")
    if not sep:
        return ""
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if i != -1 and i < end:
            end = i
    return rest[:end].rpartition("@")[2]


def with_scheme(url: str, scheme: str) -> str:
    """``url`` with its scheme replaced."""
    _, sep, rest = url.partition("://")
    return f"{scheme}://{rest}" if sep else url


def is_blocked_address(host: str) -> bool:
    """True for IP literals that must not receive requests a remote server chose (SSRF guard):
    loopback, private (RFC 1918, IPv6 ULA), link-local and unspecified addresses. DNS names are not
    resolved here (as upstream; see go-containerregistry#2440)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified or ip.is_multicast
