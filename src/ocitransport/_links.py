"""``Link`` response headers (RFC 8288), as registries use them to page tag and catalog lists (sans-I/O).

Registries answer ``GET /v2/<name>/tags/list?n=N`` with ``Link: </v2/<name>/tags/list?n=N&last=x>;
rel="next"`` while more pages remain. The header comes from the network, so the parser accepts any text:
what it cannot read is skipped, never raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urljoin, urlsplit

__all__ = ["MAX_LINK_HEADER", "next_link", "parse_links"]

#: The longest ``Link`` value considered; a longer one is ignored (a page URL is a few hundred bytes).
MAX_LINK_HEADER = 64 * 1024


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside ``<...>`` and quoted strings."""
    out: list[str] = []
    start = 0
    in_uri = in_quote = escaped = False
    for i, ch in enumerate(text):
        if in_quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_quote = False
        elif in_uri:
            if ch == ">":
                in_uri = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_uri = True
        elif ch == sep:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        out: list[str] = []
        escaped = False
        for ch in inner:
            if escaped:
                out.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            else:
                out.append(ch)
        return "".join(out)
    return value


def parse_links(values: str | Iterable[str] | None) -> list[tuple[str, dict[str, str]]]:
    """Every ``<target>; name=value...`` of one or more ``Link`` values, as ``(target, params)`` with
    parameter names lower-cased (the first of a repeated parameter wins, as RFC 8288 says).

    Malformed link-values (no ``<...>``, a value over :data:`MAX_LINK_HEADER`) are skipped; anything that
    is not a str is ignored. Never raises.
    """
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values) if _iterable(values) else []
    links: list[tuple[str, dict[str, str]]] = []
    for value in items:
        if not isinstance(value, str) or len(value) > MAX_LINK_HEADER:
            continue
        for link_value in _split_top(value, ","):
            link_value = link_value.strip()
            if not link_value.startswith("<"):
                continue
            end = link_value.find(">")
            if end < 0:
                continue
            target = link_value[1:end].strip()
            params: dict[str, str] = {}
            for param in _split_top(link_value[end + 1:], ";")[1:]:
                name, eq, raw = param.partition("=")
                name = name.strip().lower()
                if name and name not in params:
                    params[name] = _unquote(raw) if eq else ""
            links.append((target, params))
    return links


def _iterable(value: object) -> bool:
    try:
        iter(value)  # type: ignore[call-overload]
    except TypeError:
        return False
    return True


def next_link(values: str | Iterable[str] | None, base_url: str) -> str | None:
    """The absolute http(s) URL of the first ``rel="next"`` link in ``values``, resolved against
    ``base_url`` (the URL of the page that carried it); ``None`` when there is none or it is unusable
    (unparsable, or a scheme other than http and https). Never raises for str input.

    Following the link to another host is the caller's decision: the authenticating transports only
    send the registry's credentials to the registry's own host.
    """
    for target, params in parse_links(values):
        relations = params.get("rel", "").lower().split()
        if "next" not in relations:
            continue
        if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in target):
            continue  # whitespace or a control character: urljoin would silently drop some of them
        try:
            url = urljoin(base_url, target)
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError for a port that is not a number in range
        except ValueError:
            continue
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            continue
        return url
    return None
