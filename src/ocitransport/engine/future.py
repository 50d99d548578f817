"""``EngineFuture``: the ``concurrent.futures.Future`` that ``Engine.submit`` returns."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from concurrent.futures._base import (  # the state names cf.Future uses internally
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
)
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .driver import Driver
    from .transfer import _Transfer

__all__ = ["EngineFuture"]


class EngineFuture(cf.Future):  # type: ignore[type-arg]
    """The ``concurrent.futures.Future`` that ``submit()`` returns.

    It is a real ``Future`` (``concurrent.futures.wait``, ``as_completed`` and ``asyncio.wrap_future``
    work), but it builds its ``Condition`` only when something needs one; ``result()`` and
    ``exception()`` first try to drive the engine themselves. ``cancel()`` cancels the transfer:
    the handle leaves the multi and the connection slot is freed.
    """

    def __init__(self, engine: Driver, transfer: _Transfer) -> None:
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []
        self._cond: threading.Condition | None = None
        self._engine = engine
        self._transfer = transfer

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            with _COND_LOCK:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    def done(self) -> bool:
        return self._state in (FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        return self._state == PENDING

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def cancel(self) -> bool:
        if self._state == FINISHED:
            return False
        # Settle as cancelled first, so a completion racing in from the driver cannot win after
        # the transfer was already asked to stop.
        cancelled = super().cancel()
        if cancelled and self._transfer is not None:
            self._engine.cancel(self._transfer, None)
        return cancelled

    def _settle(self, result: Any, error: BaseException | None) -> None:
        """Called once by the engine (driver thread)."""
        if self._state != PENDING:
            return  # cancelled meanwhile
        if self._cond is None:
            self._result = result
            self._exception = error
            self._state = FINISHED
            if self._cond is None:  # nobody started blocking after the state was written
                self._invoke_callbacks()  # type: ignore[attr-defined]
                return
            with self._cond:
                for waiter in self._waiters:
                    if error is None:
                        waiter.add_result(self)
                    else:
                        waiter.add_exception(self)
                self._cond.notify_all()
            self._invoke_callbacks()
            return
        try:
            if error is None:
                super().set_result(result)
            else:
                super().set_exception(error)
        except cf.InvalidStateError:
            pass

    def _drive(self, timeout: float | None) -> None:
        """Drive (or wait for the driver) until the transfer is in; the Condition path covers the rest."""
        if self._state == PENDING and not self._transfer.ready:
            self._engine.wait(self._transfer, timeout)

    def result(self, timeout: float | None = None) -> Any:
        if self._state == FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result
        self._drive(timeout)
        if self._state == FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result
        return super().result(timeout=0 if self._state != PENDING else timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == FINISHED:
            return self._exception
        self._drive(timeout)
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout=0 if self._state != PENDING else timeout)


_COND_LOCK = threading.Lock()
