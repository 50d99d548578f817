"""Dispatcher for WWW-Authenticate challenge parsing (RFC 7235).

Picks the compiled twin (``ocitransport._challenges_c``) unless ``OCITRANSPORT_NO_EXTENSIONS`` is set or it is
not built, else the pure twin (``ocitransport._challenges_py``). Nothing else imports a twin directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._compat import NO_EXTENSIONS, REQUIRE_EXTENSIONS

COMPILED = False
if TYPE_CHECKING or NO_EXTENSIONS:
    from ._challenges_py import (
        parse_challenges,
    )
else:
    try:
        from ._challenges_c import (  # type: ignore[import-not-found]
            parse_challenges,
        )

        COMPILED = True
    except ImportError:  # pragma: no cover - depends on the build
        if REQUIRE_EXTENSIONS:
            raise
        from ._challenges_py import (
            parse_challenges,
        )

__all__ = ["parse_challenges"]
