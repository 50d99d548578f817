"""Small value types produced by the sans-I/O core and its compiled twins.

They live apart from the twins so that the pure and the compiled twin build the very same classes;
the public modules (``ocitransport.transport``) re-export them.
"""

from __future__ import annotations

import enum
from typing import Any

# The compiled twins fill Challenge's and Scope's __slots__ through their member descriptors, by name
# and in this order (ext/_capi.pxd ``slot_member``): a reordered tuple makes the compiled module refuse to
# import, and without OCITRANSPORT_REQUIRE_EXTENSIONS the package quietly falls back to the pure twins.
# Keep the order; tests/test_values.py guards it, and ruff's RUF023 (sort __slots__) stays off.


class Challenge:
    """One ``WWW-Authenticate`` challenge.

    ``scheme`` and the parameter names are lower-cased; parameter values are kept as sent.
    ``insecure`` is true when the ping that produced the challenge ended on plain HTTP.
    ``token68`` holds the RFC 7235 token68 credential of challenges that carry one instead of parameters.
    """

    __slots__ = ("scheme", "parameters", "insecure", "token68")

    def __init__(
        self,
        scheme: str,
        parameters: dict[str, str] | None = None,
        insecure: bool = False,
        token68: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.parameters: dict[str, str] = {} if parameters is None else parameters
        self.insecure = insecure
        self.token68 = token68

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Challenge):
            return NotImplemented
        return (
            self.scheme == other.scheme
            and self.parameters == other.parameters
            and self.insecure == other.insecure
            and self.token68 == other.token68
        )

    def __hash__(self) -> int:
        return hash((self.scheme, tuple(sorted(self.parameters.items())), self.insecure, self.token68))

    def __repr__(self) -> str:
        extra = f", token68={self.token68!r}" if self.token68 is not None else ""
        return f"Challenge({self.scheme!r}, {self.parameters!r}, insecure={self.insecure!r}{extra})"


class ErrorCode(str, enum.Enum):
    """The registry error codes of the distribution spec (and ``UNAVAILABLE`` from docker/distribution)."""

    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
    BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
    DIGEST_INVALID = "DIGEST_INVALID"
    MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
    MANIFEST_INVALID = "MANIFEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    MANIFEST_UNVERIFIED = "MANIFEST_UNVERIFIED"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    SIZE_INVALID = "SIZE_INVALID"
    TAG_INVALID = "TAG_INVALID"
    UNAUTHORIZED = "UNAUTHORIZED"
    DENIED = "DENIED"
    UNSUPPORTED = "UNSUPPORTED"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"
    UNKNOWN = "UNKNOWN"
    UNAVAILABLE = "UNAVAILABLE"

    def __str__(self) -> str:
        return self.value


class Diagnostic:
    """One entry of a registry error body: ``{"code": ..., "message": ..., "detail": ...}``.

    ``code`` is a plain ``str`` (registries send codes outside the spec); compare it with ``ErrorCode``
    members directly, they are ``str`` too. ``str()`` gives ``"CODE: message"`` or
    ``"CODE: message; detail"`` with the detail printed as go-containerregistry prints it.
    """

    __slots__ = ("code", "message", "detail")

    def __init__(self, code: str, message: str = "", detail: Any = None) -> None:
        self.code = code
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        from ._diagnostics import format_diagnostic

        return format_diagnostic(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Diagnostic):
            return NotImplemented
        return (self.code, self.message, self.detail) == (other.code, other.message, other.detail)

    __hash__ = None  # type: ignore[assignment]  # detail may be a dict

    def __repr__(self) -> str:
        return f"Diagnostic({self.code!r}, {self.message!r}, {self.detail!r})"


class Scope:
    """A parsed token scope: ``repository:library/ubuntu:pull,push`` -> type, name, actions."""

    __slots__ = ("type", "name", "actions")

    def __init__(self, type: str, name: str, actions: tuple[str, ...]) -> None:
        self.type = type
        self.name = name
        self.actions = actions

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scope):
            return NotImplemented
        return (self.type, self.name, self.actions) == (other.type, other.name, other.actions)

    def __hash__(self) -> int:
        return hash((self.type, self.name, self.actions))

    def __repr__(self) -> str:
        return f"Scope({self.type!r}, {self.name!r}, {self.actions!r})"
