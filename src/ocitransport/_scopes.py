"""Dispatcher for token scope strings: build, merge, parse, and the token request query.

Picks the compiled twin (``ocitransport._scopes_c``) unless ``OCITRANSPORT_NO_EXTENSIONS`` is set or it is
not built, else the pure twin (``ocitransport._scopes_py``). Nothing else imports a twin directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._compat import NO_EXTENSIONS, REQUIRE_EXTENSIONS

COMPILED = False
if TYPE_CHECKING or NO_EXTENSIONS:
    from ._scopes_py import (
        merge_scopes,
        parse_scope,
        registry_scope,
        repository_scope,
        token_query,
    )
else:
    try:
        from ._scopes_c import (  # type: ignore[import-not-found]
            merge_scopes,
            parse_scope,
            registry_scope,
            repository_scope,
            token_query,
        )

        COMPILED = True
    except ImportError:  # pragma: no cover - depends on the build
        if REQUIRE_EXTENSIONS:
            raise
        from ._scopes_py import (
            merge_scopes,
            parse_scope,
            registry_scope,
            repository_scope,
            token_query,
        )

__all__ = ["repository_scope", "registry_scope", "merge_scopes", "parse_scope", "token_query"]
