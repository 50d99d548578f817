"""Dispatcher for response heads: libcurl's raw header lines to status, reason, version and headers.

Picks the compiled twin (``ocitransport._heads_c``) unless ``OCITRANSPORT_NO_EXTENSIONS`` is set or it is
not built, else the pure twin (``ocitransport._heads_py``). Nothing else imports a twin directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._compat import NO_EXTENSIONS, REQUIRE_EXTENSIONS

COMPILED = False
if TYPE_CHECKING or NO_EXTENSIONS:
    from ._heads_py import (
        is_interim,
        parse_head,
    )
else:
    try:
        from ._heads_c import (  # type: ignore[import-not-found]
            is_interim,
            parse_head,
        )

        COMPILED = True
    except ImportError:  # pragma: no cover - depends on the build
        if REQUIRE_EXTENSIONS:
            raise
        from ._heads_py import (
            is_interim,
            parse_head,
        )

__all__ = ["is_interim", "parse_head"]
