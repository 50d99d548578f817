"""Pure-Python twin: response heads, from libcurl's raw header lines to version, status, reason, headers.

The compiled twin (``ext/_heads_c.pyx``) gives the same results and raises the same exceptions on
every input; ``tests/test_heads_twins.py`` checks that.

What ``parse_head`` accepts is what libcurl's HEADERFUNCTION hands over for one transfer, in order:
each element is one line with its terminator (``\\r\\n`` or a bare ``\\n``). The rules:

- A line starting with ``HTTP/`` is a status line and starts a new head. Its form is
  ``VERSION WS STATUS [WS REASON]`` where WS is a run of ASCII whitespace (space, tab, CR, LF, VT,
  FF), STATUS is exactly three ASCII digits and REASON (whitespace-stripped, possibly empty) is
  the rest. Any status line that does not have this form raises ``ProtocolError``, even in an
  interim head: a peer that garbles one status line cannot be trusted with the next.
- A blank line (nothing but CR/LF bytes) ends the head. Lines after it that are not a status line
  (chunked trailers, stray bytes) belong to no head and are ignored, as are lines before the
  first status line; ``Response.headers`` describes the head, and no registry sends trailers.
- Inside a head, a line starting with SP or HT continues the previous header's value (obsolete
  line folding, RFC 9112 §5.2): its stripped text is joined to the value with one space (nothing
  is added when it is empty). A folded line with no header before it is ignored.
- Any other line is ``name: value``. The name is the bytes before the first ``:`` exactly as sent
  (http.client keeps it the same way); the value is stripped of ASCII whitespace on both sides.
  Lines without ``:`` and lines with an empty name are skipped.
- Bytes decode as latin-1, as http.client and httpx do.

The result is the last head that has a status line (after 100 Continue, 103 Early Hints, or a
proxy's ``200 Connection established``); ``ProtocolError`` when there is no status line at all.
"""

from __future__ import annotations

from .exceptions import ProtocolError as _ProtocolError

__all__ = ["is_interim", "parse_head"]

_NO_STATUS_LINE = "no HTTP status line in the response head"
# What bytes.strip() and bytes.split() treat as whitespace: SP, HT, LF, VT, FF, CR.
_WHITESPACE = " \t\n\x0b\x0c\r"


def _malformed(line: bytes) -> _ProtocolError:
    text = line.rstrip(b"\r\n")[:200].decode("latin-1")
    return _ProtocolError(f"malformed HTTP status line: {text!r}")


def _status_line(line: bytes) -> tuple[str, int, str]:
    parts = line.split(None, 2)
    if len(parts) < 2:
        raise _malformed(line)
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise _malformed(line)
    reason = parts[2].strip().decode("latin-1") if len(parts) == 3 else ""
    return parts[0].decode("latin-1"), int(code), reason


def is_interim(line: bytes) -> bool:
    """Whether ``line`` is a status line of an interim head (1xx other than ``101 Switching
    Protocols``, which is final), by ``parse_head``'s rules. A malformed status line or any other
    line is not: the head it starts is final, and ``parse_head`` raises for it."""
    if line.__class__ is not bytes and not isinstance(line, bytes):
        raise TypeError(f"is_interim() expects bytes, got {type(line).__name__}")
    if line[:5] != b"HTTP/":
        return False
    parts = line.split(None, 2)  # _status_line's split, without building the strings
    if len(parts) < 2:
        return False
    code = parts[1]
    return len(code) == 3 and code.isdigit() and code[0] == 0x31 and code != b"101"  # 1xx, not 101


def parse_head(lines: list[bytes] | tuple[bytes, ...]) -> tuple[str, int, str, list[tuple[str, str]]]:
    """``(http_version, status, reason, headers)`` of the last head in libcurl's header lines.

    ``headers`` is a list of ``(name, value)`` pairs in arrival order, ready for
    ``Headers._from_list``. Raises ``ProtocolError`` for a missing or malformed status line and
    ``TypeError`` when ``lines`` is not a list or tuple of bytes.
    """
    if not isinstance(lines, (list, tuple)):
        raise TypeError(f"parse_head() expects a list or tuple of bytes, got {type(lines).__name__}")
    status = None
    headers: list[tuple[str, str]] = []
    append = headers.append
    in_head = False
    for line in lines:
        if line.__class__ is not bytes and not isinstance(line, bytes):  # cheap test first
            raise TypeError(f"parse_head() expects bytes lines, got {type(line).__name__}")
        if line[:5] == b"HTTP/":
            status = _status_line(line)
            headers = []
            append = headers.append
            in_head = True
            continue
        if not in_head:
            continue
        name, colon, value = line.decode("latin-1").partition(":")
        if colon and name[:1] not in " \t":
            append((name, value.strip(_WHITESPACE)))
        elif not line.rstrip(b"\r\n"):
            in_head = False
        elif line[0] == 32 or line[0] == 9:  # SP, HT: obsolete line folding
            more = line.strip()
            if headers and more:
                name_text, text = headers[-1]
                more_text = more.decode("latin-1")
                headers[-1] = (name_text, text + " " + more_text if text else more_text)
    if status is None:
        raise _ProtocolError(_NO_STATUS_LINE)
    return status[0], status[1], status[2], headers
