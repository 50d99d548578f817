"""Registry errors: ``Error``, ``Diagnostic``, ``ErrorCode`` and ``check_error``, in go-containerregistry's formats."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._diagnostics import decode_error_body, format_error, is_temporary
from .._redaction import redact_url
from .._values import Diagnostic, ErrorCode
from ..exceptions import BodyTooLarge, OCITransportError

if TYPE_CHECKING:
    from ..messages import Request, Response

#: The largest error body ``check_error`` reads (upstream's maxErrorBodySize).
MAX_ERROR_BODY = 64 * 1024


class Error(OCITransportError):
    """A registry answered with an unexpected status.

    ``errors`` holds the diagnostics of the registry's JSON error body (empty when it sent none);
    ``status_code`` the HTTP status; ``request`` the request that got it (or ``None``).
    ``str(error)`` follows go-containerregistry (pkg/v1/remote/transport/error.go):
    ``"GET https://r/v2/a/manifests/x: MANIFEST_UNKNOWN: manifest unknown"``.
    """

    def __init__(
        self,
        status_code: int,
        errors: list[Diagnostic] | None = None,
        *,
        request: Request | None = None,
        body: bytes = b"",
        temporary: bool = False,
        wait_refused: str = "",
    ) -> None:
        self.status_code = status_code
        self.errors: list[Diagnostic] = [] if errors is None else errors
        self.request = request
        self.raw_body = body
        self._temporary = temporary
        #: Why the wait the registry asked for was not waited out (``Retry-After`` over the cap), or "".
        self.wait_refused = wait_refused
        super().__init__(self._message())

    def _message(self) -> str:
        method = url = None
        if self.request is not None:
            method, url = self.request.method, redact_url(self.request.url)
        text = format_error(method, url, self.status_code, self.errors, self.raw_body)
        return f"{text} ({self.wait_refused})" if self.wait_refused else text

    def temporary(self) -> bool:
        """Whether retrying may help: 408/429/5xx without diagnostics, or only retryable codes; never
        when the registry asked for a wait longer than the cap (another attempt would be told the same)."""
        if self.wait_refused:
            return False
        return self._temporary or is_temporary(self.status_code, self.errors)

    def has_code(self, *codes: str | ErrorCode) -> bool:
        """True when any diagnostic carries one of ``codes``."""
        wanted = {str(c) for c in codes}
        return any(d.code in wanted for d in self.errors)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Picklable (mirror reports cross process boundaries); the request is dropped, not its text.
        return (_rebuild_error, (self.status_code, self.errors, str(self), self._temporary, self.wait_refused))


def _rebuild_error(status: int, errors: list[Diagnostic], message: str, temporary: bool,
                   wait_refused: str = "") -> Error:
    err = Error.__new__(Error)
    err.status_code, err.errors, err.request, err.raw_body, err._temporary = status, errors, None, b"", temporary
    err.wait_refused = wait_refused
    OCITransportError.__init__(err, message)
    return err


def make_error(response: Response, body: bytes, *, temporary: bool = False) -> Error:
    """The ``Error`` for ``response`` whose body (already read, at most 64 KiB) is ``body``."""
    return Error(
        response.status,
        decode_error_body(body) if body else [],
        request=response.request,
        body=body,
        temporary=temporary,
        wait_refused=str(response.extensions.get("wait_refused") or ""),
    )


def check_error(response: Response, *codes: int) -> None:
    """Raise ``Error`` unless ``response.status`` is one of ``codes``.

    A streaming body is read (at most 64 KiB; more raises ``BodyTooLarge``, never a truncated message).
    For async code, ``await response.aread()`` first.
    """
    if response.status in codes:
        return
    if response.is_streaming:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ERROR_BODY:
                    raise BodyTooLarge(MAX_ERROR_BODY)
        finally:
            response.close()
        body = b"".join(chunks)
    else:
        body = response.content
        if len(body) > MAX_ERROR_BODY:
            raise BodyTooLarge(MAX_ERROR_BODY)
    raise make_error(response, body)
