"""``EngineFuture``: the ``concurrent.futures.Future`` that ``Engine.submit`` returns."""

from __future__ import annotations

from typing import Any

from ..messages import Request
from ..roundtrip import FlowFuture, Hops

__all__ = ["EngineFuture"]


class EngineFuture(FlowFuture[Any]):
    """The future of one request (``Engine.submit``): a ``FlowFuture`` of a single hop.

    ``result()`` and ``exception()`` drive the engine themselves when no other thread does;
    ``cancel()`` cancels the transfer: the handle leaves the multi and the connection slot is freed.
    It reaches the engine only through the ``Driver`` protocol (``Hops`` is its part for futures).
    """

    def __init__(self, hops: Hops, request: Request) -> None:
        super().__init__(hops)
        self._start(request)
