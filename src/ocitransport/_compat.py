"""Build and import switches, read once for the whole package.

``OCITRANSPORT_NO_EXTENSIONS`` forces the pure-Python twins, ``OCITRANSPORT_REQUIRE_EXTENSIONS`` turns a
missing compiled twin into an ImportError. Non-empty means on (as in yarl and aiohttp); ``setup.py``
reads the same variables the same way.
"""

from __future__ import annotations

import os
import sys

NO_EXTENSIONS: bool = bool(os.environ.get("OCITRANSPORT_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)
REQUIRE_EXTENSIONS: bool = bool(os.environ.get("OCITRANSPORT_REQUIRE_EXTENSIONS")) and not NO_EXTENSIONS

#: The hot-path modules that exist as twins: ``_NAME_py.py`` (pure) and ``_NAME_c`` (compiled from
#: ``ext/_NAME_c.pyx``), chosen by the dispatcher ``_NAME.py``.
TWINS: tuple[str, ...] = ("_challenges", "_scopes", "_diagnostics", "_heads", "_redaction")
