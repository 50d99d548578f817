"""The ``ocitransport`` command line: ``copy``, ``mirror``, ``sync`` and ``demo`` (also ``python -m ocitransport``).

``main`` parses and runs a command (cli/main.py); ``progress`` holds the displays; ``demo`` the
throw-away-registries demo. Nothing below this package imports it.
"""

from __future__ import annotations

from .main import PROG, main
from .progress import LineProgress, RichProgress

__all__ = ["PROG", "LineProgress", "RichProgress", "main"]
