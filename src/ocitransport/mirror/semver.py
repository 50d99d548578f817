"""Semantic version constraints for selecting tags (``images-by-semver`` in a sync file).

The constraint language is the one skopeo's sync uses (the Masterminds ``semver`` v3 rules), so a
sync file moves between the two tools unchanged:

- comparisons ``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=`` (no operator means ``=``);
- ``~1.2.3`` (``>= 1.2.3, < 1.3.0``), ``~1`` (``>= 1.0.0, < 2.0.0``);
- ``^1.2.3`` (``>= 1.2.3, < 2.0.0``), ``^0.2.3`` (``>= 0.2.3, < 0.3.0``), ``^0.0.3`` (``= 0.0.3``);
- wildcards ``x``, ``X`` or ``*`` and missing parts: ``1.2.x`` / ``1.2`` mean any ``1.2`` patch;
- ranges ``1.2 - 1.4.5`` (``>= 1.2.0, <= 1.4.5``);
- a comma or blank between comparisons means AND, ``||`` means OR;
- versions and constraints may start with ``v``; build metadata (``+...``) is ignored when comparing.

Pre-releases (``1.3.0-rc.1``) only match a comparison whose own version has a pre-release part.
Tags that are not versions (``latest``, ``1.2.3.4``) never match. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import total_ordering

__all__ = ["MAX_VERSION_NUMBER", "Constraint", "SemverError", "Version", "matching", "parse_constraint",
           "parse_version"]

_IDENT = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_VERSION = re.compile(rf"^v?(0|[0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?(?:-({_IDENT}))?(?:\+({_IDENT}))?$")
_WILD = r"(?:[0-9]+|[xX*])"
_PARTIAL = rf"v?{_WILD}(?:\.{_WILD})?(?:\.{_WILD})?(?:-{_IDENT})?(?:\+{_IDENT})?"
_COMPARISON = re.compile(rf"(!=|>=|=>|<=|=<|>|<|=|~>|~|\^)?\s*({_PARTIAL})")
_HYPHEN = re.compile(rf"^\s*({_PARTIAL})\s+-\s+({_PARTIAL})\s*$")
_PART = re.compile(rf"^v?({_WILD})(?:\.({_WILD}))?(?:\.({_WILD}))?(?:-({_IDENT}))?(?:\+({_IDENT}))?$")


#: The largest version number (major, minor, patch): Masterminds/semver parses them as uint64
#: (version.go, ``strconv.ParseUint(..., 10, 64)``) and refuses larger ones; so does this module, and
#: a tag such as a 5,000-digit number is simply not a version (Python's ``int()`` of it would raise).
MAX_VERSION_NUMBER = (1 << 64) - 1
#: Characters of a version number: enough for MAX_VERSION_NUMBER, checked before any ``int()``.
_MAX_DIGITS = len(str(MAX_VERSION_NUMBER))


def _number(text: str) -> int | None:
    """``text`` (ASCII digits) as a version number, ``None`` above :data:`MAX_VERSION_NUMBER`."""
    if len(text.lstrip("0")) > _MAX_DIGITS:
        return None
    value = int(text)
    return value if value <= MAX_VERSION_NUMBER else None


class SemverError(ValueError):
    """A constraint that cannot be parsed (the message names it)."""


@total_ordering
@dataclass(frozen=True)
class Version:
    """A semantic version; ordered by precedence (build metadata ignored, as the spec says)."""

    major: int
    minor: int = 0
    patch: int = 0
    prerelease: str = ""
    build: str = ""

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def compare(self, other: Version) -> int:
        """-1, 0 or 1 as ``self`` has lower, equal or higher precedence than ``other``."""
        if self._key() != other._key():
            return -1 if self._key() < other._key() else 1
        return _compare_prerelease(self.prerelease, other.prerelease)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.compare(other) == 0

    def __lt__(self, other: Version) -> bool:
        return self.compare(other) < 0

    def __hash__(self) -> int:
        return hash((self._key(), self.prerelease))

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += f"-{self.prerelease}"
        return text + (f"+{self.build}" if self.build else "")


def _compare_prerelease(a: str, b: str) -> int:
    # No pre-release ranks above any pre-release of the same version (1.0.0 > 1.0.0-rc.1).
    if a == b:
        return 0
    if not a:
        return 1
    if not b:
        return -1
    left, right = a.split("."), b.split(".")
    for x, y in zip(left, right):
        if x == y:
            continue
        xd, yd = x.isdigit(), y.isdigit()
        if xd and yd:  # numerically, without int(): an identifier may have thousands of digits
            x, y = x.lstrip("0"), y.lstrip("0")
            return -1 if (len(x), x) < (len(y), y) else 1
        if xd != yd:
            return -1 if xd else 1  # numeric identifiers rank below alphanumeric ones
        return -1 if x < y else 1
    return -1 if len(left) < len(right) else 1 if len(left) > len(right) else 0


def _valid_prerelease(text: str) -> bool:
    return all(not (part.isdigit() and len(part) > 1 and part.startswith("0")) for part in text.split("."))


def parse_version(text: str) -> Version | None:
    """``text`` as a version (``1``, ``1.2``, ``v1.2.3-rc.1+build``), or ``None`` when it is not one."""
    match = _VERSION.match(text.strip())
    if match is None:
        return None
    major, minor, patch, pre, build = match.groups()
    if pre and not _valid_prerelease(pre):
        return None
    x, y, z = (_number(n or "0") for n in (major, minor, patch))
    if x is None or y is None or z is None:
        return None
    return Version(x, y, z, pre or "", build or "")


# -------------------------------------------------------------------------------------- constraints

@dataclass(frozen=True)
class _Comparison:
    """One ``OP VERSION``: ``version`` has wildcards filled with zeros; ``minor_dirty`` says the minor
    (and patch) were wildcards or missing, ``patch_dirty`` the patch only, ``dirty`` any of it."""

    op: str
    version: Version
    dirty: bool
    minor_dirty: bool
    patch_dirty: bool

    def allows(self, v: Version) -> bool:
        if self.op != "!=" and v.prerelease and not self.version.prerelease:
            return False  # pre-releases only where the constraint asks for them
        return _CHECKS[self.op](self, v)


def _is_wild(part: str | None) -> bool:
    return part is None or part in ("x", "X", "*")


def _comparison(op: str, text: str, whole: str) -> _Comparison:
    match = _PART.match(text)
    if match is None:
        raise SemverError(f"invalid version {text!r} in constraint {whole!r}")
    major, minor, patch, pre, _ = match.groups()
    pre = pre or ""
    if pre and not _valid_prerelease(pre):
        raise SemverError(f"invalid pre-release in {text!r} of constraint {whole!r}")
    if any(not _is_wild(n) and _number(n or "0") is None for n in (major, minor, patch)):
        raise SemverError(f"version number above {MAX_VERSION_NUMBER} in constraint {whole[:200]!r}")
    if _is_wild(major):
        return _Comparison(op, Version(0, 0, 0, pre), True, False, False)
    if _is_wild(minor):
        return _Comparison(op, Version(int(major), 0, 0, pre), True, True, False)
    if _is_wild(patch):
        return _Comparison(op, Version(int(major), int(minor), 0, pre), True, False, True)
    return _Comparison(op, Version(int(major), int(minor), int(patch), pre), False, False, False)


def _tilde(c: _Comparison, v: Version) -> bool:
    if v < c.version:
        return False
    base = c.version
    if (base.major, base.minor, base.patch) == (0, 0, 0) and not c.minor_dirty and not c.patch_dirty:
        return True  # ~0.0.0 and * accept everything
    if v.major != base.major:
        return False
    return v.minor == base.minor or c.minor_dirty


def _equal(c: _Comparison, v: Version) -> bool:
    return _tilde(c, v) if c.dirty else v == c.version


def _not_equal(c: _Comparison, v: Version) -> bool:
    base = c.version
    if c.dirty:
        if v.prerelease and not base.prerelease:
            return False
        if base.major != v.major:
            return True
        if c.minor_dirty:
            return False
        if base.minor != v.minor:
            return True
        if c.patch_dirty:
            if v.prerelease or base.prerelease:
                return _compare_prerelease(v.prerelease, base.prerelease) != 0
            return False
    return v != base


def _greater(c: _Comparison, v: Version) -> bool:
    base = c.version
    if not c.dirty:
        return v > base
    if v.major != base.major:
        return v.major > base.major
    if c.minor_dirty:
        return False  # > 11 needs 12 or later
    if c.patch_dirty:
        return v.minor > base.minor  # > 11.1 needs 11.2 or later
    return v > base


def _less(c: _Comparison, v: Version) -> bool:
    return v < c.version


def _greater_equal(c: _Comparison, v: Version) -> bool:
    return v >= c.version


def _less_equal(c: _Comparison, v: Version) -> bool:
    base = c.version
    if not c.dirty:
        return v <= base
    if v.major != base.major:
        return v.major < base.major
    if c.minor_dirty:
        return True  # <= 1 takes every 1.x
    if c.patch_dirty:
        return v.minor <= base.minor
    return v <= base


def _caret(c: _Comparison, v: Version) -> bool:
    base = c.version
    if v < base:
        return False
    if base.major > 0 or c.minor_dirty:
        return v.major == base.major
    if v.major > 0:
        return False
    if base.minor > 0 or c.patch_dirty:
        return v.minor == base.minor
    if v.minor > 0:
        return False
    return v.patch == base.patch


_CHECKS: dict[str, Callable[[_Comparison, Version], bool]] = {
    "=": _equal, "!=": _not_equal, ">": _greater, "<": _less, ">=": _greater_equal, "<=": _less_equal,
    "~": _tilde, "^": _caret,
}
_ALIASES = {"": "=", "=>": ">=", "=<": "<=", "~>": "~"}


@dataclass(frozen=True)
class Constraint:
    """A parsed constraint: OR of AND-groups of comparisons. ``str()`` gives the original text."""

    text: str
    groups: tuple[tuple[_Comparison, ...], ...]

    def allows(self, version: Version | str) -> bool:
        """Whether ``version`` (a :class:`Version` or a tag) satisfies the constraint; a tag that is
        not a version never does."""
        v = parse_version(version) if isinstance(version, str) else version
        if v is None:
            return False
        return any(all(c.allows(v) for c in group) for group in self.groups)

    def __str__(self) -> str:
        return self.text


def _group(text: str, whole: str) -> tuple[_Comparison, ...]:
    out: list[_Comparison] = []
    for part in text.split(","):
        if not part.strip():
            raise SemverError(f"invalid constraint {whole!r}: empty comparison")
        hyphen = _HYPHEN.match(part)
        if hyphen:
            out += [_comparison(">=", hyphen.group(1), whole), _comparison("<=", hyphen.group(2), whole)]
            continue
        position = 0
        while True:
            while position < len(part) and part[position].isspace():
                position += 1
            if position >= len(part):
                break
            match = _COMPARISON.match(part, position)
            # A comparison ends at a blank or the end (so "1.2.3.4" and ">=1.2foo" are refused).
            if match is None or (match.end() < len(part) and not part[match.end()].isspace()):
                bad = part[position:].split()[0]
                raise SemverError(f"invalid constraint {whole!r}: cannot read {bad!r}")
            op = match.group(1) or ""
            out.append(_comparison(_ALIASES.get(op, op), match.group(2), whole))
            position = match.end()
    return tuple(out)


def parse_constraint(text: str) -> Constraint:
    """Parse ``text`` (``">= 1.2.0, < 2"``, ``"^1.4 || ~2.0"``); raises :class:`SemverError`."""
    if not isinstance(text, str) or not text.strip():
        raise SemverError("empty semver constraint")
    return Constraint(text.strip(), tuple(_group(part, text.strip()) for part in text.split("||")))


def matching(tags: Iterable[str], constraint: Constraint | str) -> list[str]:
    """The tags of ``tags`` that satisfy ``constraint``, in their original order."""
    parsed = parse_constraint(constraint) if isinstance(constraint, str) else constraint
    return [tag for tag in tags if parsed.allows(tag)]
