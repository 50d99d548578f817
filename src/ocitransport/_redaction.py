"""Dispatcher for redaction of secrets in URLs, headers and token bodies.

Picks the compiled twin (``ocitransport._redaction_c``) unless ``OCITRANSPORT_NO_EXTENSIONS`` is set or it is
not built, else the pure twin (``ocitransport._redaction_py``). Nothing else imports a twin directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._compat import NO_EXTENSIONS, REQUIRE_EXTENSIONS

COMPILED = False
if TYPE_CHECKING or NO_EXTENSIONS:
    from ._redaction_py import (
        redact_headers,
        redact_token_body,
        redact_url,
    )
else:
    try:
        from ._redaction_c import (  # type: ignore[import-not-found]
            redact_headers,
            redact_token_body,
            redact_url,
        )

        COMPILED = True
    except ImportError:  # pragma: no cover - depends on the build
        if REQUIRE_EXTENSIONS:
            raise
        from ._redaction_py import (
            redact_headers,
            redact_token_body,
            redact_url,
        )

__all__ = ["redact_url", "redact_headers", "redact_token_body"]
