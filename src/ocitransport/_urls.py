"""URL pieces the layers need on every request: scheme, host and port, without a full parse.

``urllib.parse.urlsplit`` costs a few microseconds; the layers only need the origin, so it is cut out
of the string by hand and cached for the handful of distinct origins a client talks to.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from .exceptions import AddressRefused, RedirectError

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


#: Longest ``Location`` (redirect or upload) followed; beyond it the answer is refused at once (a
#: 1 MB Location once cost 69 s and 139 requests before failing deep inside).
MAX_LOCATION = 8 * 1024


def _inet_aton(text: str) -> int | None:
    """The 32-bit value ``inet_aton(3)`` reads from ``text`` (1 to 4 parts, each decimal, octal with a
    leading ``0`` or hex with ``0x``; the last part fills the remaining bytes), or ``None``.

    This is how the system resolver (and so libcurl) reads a host that looks numeric: ``2852039166``,
    ``0xa9fea9fe``, ``169.254.43518`` and ``0251.0376.0251.0376`` all are 169.254.169.254."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        if not part or not part.isascii():
            return None
        if part[:2] in ("0x", "0X"):
            digits = part[2:]
            if not digits or not all(c in "0123456789abcdefABCDEF" for c in digits):
                return None  # glibc refuses a bare "0x" too
            value = int(digits, 16)
        elif part[0] == "0":
            if not all(c in "01234567" for c in part):
                return None
            value = int(part, 8)
        else:
            if not part.isdigit():
                return None
            value = int(part)
        values.append(value)
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    result = 0
    for v in head:
        result = (result << 8) | v
    return (result << (8 * (4 - len(head)))) | last


@lru_cache(maxsize=1024)
def host_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address libcurl connects to for ``host`` when ``host`` is an address in any spelling the
    resolver accepts, else ``None`` (a DNS name: the engine checks the address it resolves to).

    Spellings: every ``inet_aton`` form (see ``_inet_aton``), one trailing dot, IPv6 in brackets or
    not, with a zone id (``%25eth0`` / ``%eth0``); IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible
    (``::a.b.c.d``) and NAT64 (``64:ff9b::a.b.c.d``, RFC 6052) IPv6 addresses are their IPv4 address."""
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h.endswith(".") and not h.endswith(".."):
        h = h[:-1]
    if ":" in h:
        h = h.partition("%")[0]
        try:
            ip6 = ipaddress.IPv6Address(h)
        except ValueError:
            return None
        return _embedded_v4(ip6) or ip6
    value = _inet_aton(h)
    return None if value is None else ipaddress.IPv4Address(value)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    n = int(ip)
    if n >> 32 == 0 and n > 1:  # IPv4-compatible ::a.b.c.d (RFC 4291 section 2.5.5.1); not :: or ::1
        return ipaddress.IPv4Address(n)
    if ip in _NAT64:
        return ipaddress.IPv4Address(n & 0xFFFFFFFF)
    return None


def normalize_host(host: str) -> str:
    """``host`` as one canonical spelling: an address in its standard form (``2130706433`` ->
    ``127.0.0.1``, ``[::ffff:7f00:1]`` -> ``127.0.0.1``), a DNS name lower-cased without a trailing dot."""
    ip = host_address(host)
    if ip is not None:
        return str(ip)
    return host.strip().strip("[]").lower().removesuffix(".")


_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_RESERVED = ipaddress.IPv4Network("240.0.0.0/4")

#: Address kinds the SSRF rules refuse (``address_kind``), and the ones private storage may use.
ALWAYS_REFUSED = frozenset({"link-local", "unspecified", "multicast", "reserved"})


def address_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> str:
    """What kind of address ``ip`` is for the SSRF rules: ``"loopback"``, ``"private"``,
    ``"link-local"``, ``"unspecified"``, ``"multicast"``, ``"reserved"``, or ``""`` (public)."""
    if isinstance(ip, str):
        found = host_address(ip)
        if found is None:
            return ""
        ip = found
    if isinstance(ip, ipaddress.IPv6Address):
        ip = _embedded_v4(ip) or ip
    if isinstance(ip, ipaddress.IPv4Address) and int(ip) >> 24 == 0:
        return "unspecified"  # 0.0.0.0/8: Linux connects 0.0.0.0 to the local host
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and (ip in _RESERVED or int(ip) == 0xFFFFFFFF):
        return "reserved"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "private"
    if ip.is_private or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT):
        return "private"
    return ""


def describe(kind: str) -> str:
    """``"link-local"`` -> ``"a link-local address"``."""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address"


def is_blocked_address(host: str) -> bool:
    """True when ``host`` is, in any spelling libcurl connects to, an address that must not receive
    requests a remote server chose (SSRF guard): loopback, private (RFC 1918, RFC 6598, IPv6 ULA),
    link-local, unspecified, multicast and reserved addresses. DNS names are not resolved here (the
    engine checks the address a name resolves to when the request carries an ``AddressGuard``)."""
    return address_kind(host) != ""


#: Registry host -> the address its own connection used (libcurl's PRIMARY_IP), as learned from
#: responses asked for it (``AddressGuard.learn``); bounded, newest wins.
_learned: dict[str, str] = {}
_LEARNED_MAX = 256


class AddressGuard:
    """The SSRF rule for URLs a registry hands us (redirects, upload ``Location``, token realm, ``Link``).

    The registry's own host, and any host that is the very address the registry's connection uses, is
    always fine. Other loopback, private, link-local, unspecified, multicast and reserved addresses are
    refused - except private addresses (never link-local, unspecified, multicast or reserved ones) when
    ``private_storage`` is on: ``True`` by choice, or ``None`` (the default) when the registry itself is
    on a loopback or private address (its literal, or the address its connection used).

    ``check_url`` judges a URL's spelling before anything is sent; the engine calls ``refusal`` with the
    address libcurl is about to connect to (and the address of a reused connection) for requests that
    carry the guard as ``extensions["address_guard"]``, which also catches DNS names (rebinding).
    """

    __slots__ = ("private_storage", "registry", "registry_host", "what")

    def __init__(self, registry: str, *, private_storage: bool | None = False, what: str = "redirect") -> None:
        self.registry = registry
        self.registry_host = normalize_host(split_authority(registry, "https")[0]) if registry else ""
        self.private_storage = private_storage
        self.what = what

    def registry_address(self) -> str:
        """The registry's address: its literal, else the address its connection was seen to use."""
        if host_address(self.registry_host) is not None:
            return self.registry_host
        return _learned.get(self.registry_host, "")

    def learn(self, extensions: dict[str, object] | None) -> None:
        """Remember the registry's connected address from a response's ``extensions["primary_ip"]``."""
        ip = extensions.get("primary_ip") if extensions else None
        if isinstance(ip, str) and ip and self.registry_host and host_address(self.registry_host) is None:
            if len(_learned) >= _LEARNED_MAX and self.registry_host not in _learned:
                _learned.pop(next(iter(_learned)))
            _learned[self.registry_host] = normalize_host(ip)

    def private_allowed(self) -> bool:
        """Whether private (RFC 1918 / ULA) addresses may be used (see the class docstring)."""
        if self.private_storage is not None:
            return self.private_storage
        registry_ip = self.registry_address()
        return bool(registry_ip) and address_kind(registry_ip) in ("loopback", "private")

    def is_registry(self, host: str) -> bool:
        """Whether ``host`` (any spelling) is the registry's own host or address."""
        if not self.registry_host:
            return False
        h = normalize_host(host)
        return h == self.registry_host or (h != "" and h == self.registry_address())

    def refusal(self, address: str) -> str | None:
        """Why connecting to ``address`` (an IP literal) is refused, or ``None`` when it is fine."""
        ip = host_address(address)
        if ip is None:
            return None
        kind = address_kind(ip)
        if not kind:
            return None
        normal = str(ip)
        if normal == self.registry_host or normal == self.registry_address():
            return None
        if kind == "private" and self.private_allowed():
            return None
        return f"{normal}, {describe(kind)}"

    def check_url(self, url: str) -> None:
        """Raise ``AddressRefused`` when ``url``'s host is, in any spelling, a refused address."""
        host = _host_of(url)
        if self.is_registry(host):
            return
        reason = self.refusal(host)
        if reason is not None:
            ip = host_address(host)
            raise AddressRefused(self.message(url, reason), address=str(ip), kind=address_kind(ip or ""))

    def message(self, url: str, reason: str) -> str:
        """The one-line refusal: ``SSRF protection: <what> to "<host>" resolves to <reason>; refused``."""
        return f'SSRF protection: {self.what} to "{authority(url)}" resolves to {reason}; refused'

    def __call__(self, from_url: str, to_url: str) -> None:
        """A ``Redirects`` check: ``check_url(to_url)``."""
        self.check_url(to_url)

    def __repr__(self) -> str:
        return f"AddressGuard({self.registry!r}, private_storage={self.private_storage!r})"


def _host_of(url: str) -> str:
    host, _ = split_authority(authority(url), "https")
    return host


def check_location(location: str | None, what: str) -> None:
    """Refuse a ``Location`` longer than ``MAX_LOCATION`` at once (``RedirectError``)."""
    if location is not None and len(location) > MAX_LOCATION:
        raise RedirectError(f"{what}: Location header is {len(location)} bytes; at most {MAX_LOCATION} "
                            "are followed")
