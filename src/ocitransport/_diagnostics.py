"""Dispatcher for registry error bodies: decoding and go-containerregistry's message formats.

Picks the compiled twin (``ocitransport._diagnostics_c``) unless ``OCITRANSPORT_NO_EXTENSIONS`` is set or it is
not built, else the pure twin (``ocitransport._diagnostics_py``). Nothing else imports a twin directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._compat import NO_EXTENSIONS, REQUIRE_EXTENSIONS

COMPILED = False
if TYPE_CHECKING or NO_EXTENSIONS:
    from ._diagnostics_py import (
        decode_error_body,
        format_diagnostic,
        format_error,
        is_temporary,
        status_text,
    )
else:
    try:
        from ._diagnostics_c import (  # type: ignore[import-not-found]
            decode_error_body,
            format_diagnostic,
            format_error,
            is_temporary,
            status_text,
        )

        COMPILED = True
    except ImportError:  # pragma: no cover - depends on the build
        if REQUIRE_EXTENSIONS:
            raise
        from ._diagnostics_py import (
            decode_error_body,
            format_diagnostic,
            format_error,
            is_temporary,
            status_text,
        )

__all__ = ["decode_error_body", "format_diagnostic", "format_error", "status_text", "is_temporary"]
