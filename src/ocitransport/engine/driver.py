"""The one protocol through which a future, a body stream and an async upload call back into the engine.

They live in their own modules and know the engine only as a ``Driver``: start a request for a future,
wait for a waiter, cancel a transfer, resume a paused one, and tell the driver about a stream that has
data or awaits it. The first three are ``roundtrip.Hops``, all a ``FlowFuture`` needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..roundtrip import Hops

if TYPE_CHECKING:
    from .stream import BodyStream
    from .transfer import _Transfer

__all__ = ["Driver"]


class Driver(Hops, Protocol):
    """What ``EngineFuture``, ``BodyStream`` and ``_AsyncUpload`` may ask of the engine (``Engine`` is one)."""

    def wait(self, waiter: Any, timeout: float | None) -> bool:
        """Until ``waiter.ready``: drive the engine if nobody else does, else block until the driver delivers."""
        ...

    def cancel(self, transfer: _Transfer, error: BaseException | None) -> None:
        """Stop ``transfer`` and fail it with ``error`` (``RequestCancelled`` when ``None``)."""
        ...

    def unpause(self, transfer: _Transfer) -> None:
        """Resume a transfer a callback paused (a drained stream, an async body with data again)."""
        ...

    def touched(self, stream: BodyStream) -> None:
        """Driver thread: ``stream`` got data or ended; its waiting reader is woken after this turn."""
        ...

    def watch_async(self, stream: BodyStream) -> None:
        """An async reader awaits ``stream``: make sure some thread drives until it is touched."""
        ...

    def unwatch_async(self, stream: BodyStream) -> None:
        """The async reader of ``stream`` stopped waiting."""
        ...
