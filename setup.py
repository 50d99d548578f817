"""Build the compiled twins (``ext/_NAME_c.pyx`` -> ``ocitransport._NAME_c``).

All metadata lives in ``pyproject.toml``; this file only decides which extensions to build.

Environment (non-empty means on, as at import time):
  OCITRANSPORT_NO_EXTENSIONS       build nothing: a pure-Python install
  OCITRANSPORT_REQUIRE_EXTENSIONS  a failed build is an error instead of a pure fallback
  OCITRANSPORT_CYTHON_TRACE        compile with line tracing, for coverage of the .pyx files
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
NO_EXTENSIONS = bool(os.environ.get("OCITRANSPORT_NO_EXTENSIONS"))
REQUIRE_EXTENSIONS = bool(os.environ.get("OCITRANSPORT_REQUIRE_EXTENSIONS"))
CYTHON_TRACE = bool(os.environ.get("OCITRANSPORT_CYTHON_TRACE"))

if platform.python_implementation() != "CPython":
    NO_EXTENSIONS = True


class OptionalBuildExt(build_ext):
    """Fall back to a pure install with one warning line unless extensions are required."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if REQUIRE_EXTENSIONS:
                raise
            self._warn(exc)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE_EXTENSIONS:
                raise
            self._warn(exc)

    @staticmethod
    def _warn(exc: BaseException) -> None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"ocitransport: compiled twins not built ({first}); installing the pure-Python build",
              file=sys.stderr)


def extensions() -> list:
    if NO_EXTENSIONS:
        print("ocitransport: OCITRANSPORT_NO_EXTENSIONS is set; installing the pure-Python build",
              file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        print("ocitransport: Cython is not available; installing the pure-Python build", file=sys.stderr)
        return []
    from setuptools import Extension

    macros = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if CYTHON_TRACE else []
    exts = [
        Extension(f"ocitransport.{pyx.stem}", [str(pyx.relative_to(HERE))], define_macros=macros)
        for pyx in sorted((HERE / "ext").glob("_*_c.pyx"))
    ]
    directives = {
        "language_level": "3",
        "embedsignature": True,
        "freethreading_compatible": True,
        "boundscheck": False,
        "wraparound": False,
    }
    if CYTHON_TRACE:
        directives["linetrace"] = True
    return cythonize(exts, compiler_directives=directives, include_path=["ext"], quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
