"""Tag list bodies: ``GET /v2/<name>/tags/list`` answers, parsed without I/O.

The body is ``{"name": "<repository>", "tags": ["v1", ...]}``; registries send ``"tags": null`` for a
repository without tags, and some add fields of their own (GCR's ``manifest`` map). Only the tags are read.
"""

from __future__ import annotations

import json

__all__ = ["MAX_TAG_LIST_BODY", "TagListError", "parse_tag_list"]

#: The largest tag-list page read (bytes). A page of 1000 tags of the longest legal name (128 characters)
#: is about 130 KiB; registries that ignore ``n`` and send every tag at once, or add per-manifest metadata
#: as GCR does, stay far below this too. A larger page is refused with ``BodyTooLarge``.
MAX_TAG_LIST_BODY = 32 << 20


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


class TagListError(ValueError):
    """A tag list body that is not ``{"tags": [...]}``; the message says what is wrong, briefly."""


def parse_tag_list(body: bytes) -> list[str]:
    """The tags of one tag-list page, in the registry's order. ``"tags": null`` or a missing
    ``tags`` gives ``[]``; entries that are not strings are skipped. Raises :class:`TagListError` for
    a body that is not a JSON object or whose ``tags`` is not a list (and ``TypeError`` for non-bytes)."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_tag_list() expects bytes, got {type(body).__name__}")
    try:
        page = json.loads(bytes(body))
    except RecursionError:
        raise TagListError("tag list is not JSON (nested too deeply)") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise TagListError(f"tag list is not JSON ({_brief(exc)})") from None
    if not isinstance(page, dict):
        raise TagListError(f"tag list is a JSON {_JSON_TYPES.get(type(page), 'value')}, not an object")
    tags = page.get("tags")
    if tags is None:
        return []
    if not isinstance(tags, list):
        raise TagListError(f'tag list "tags" is a JSON {_JSON_TYPES.get(type(tags), "value")}, not an array')
    return [t for t in tags if isinstance(t, str)]


def _brief(exc: ValueError) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
