"""ocitransport: a fast, safe OCI / Docker registry transport on one pycurl multi-handle engine.

``COMPILED`` is true when every hot path runs its compiled (Cython) twin; set
``OCITRANSPORT_NO_EXTENSIONS=1`` to force the pure-Python twins.
"""

from __future__ import annotations

import importlib as _importlib

from ._compat import TWINS as _TWINS
from .exceptions import (
    BodyTooLarge,
    ClientClosed,
    ConnectError,
    ConnectTimeout,
    InvalidURL,
    OCITransportError,
    PoolTimeout,
    ProtocolError,
    ProxyError,
    ReadError,
    ReadTimeout,
    RedirectError,
    RequestCancelled,
    TimeoutError,
    TLSError,
    TransportError,
    UnsupportedProtocol,
    WriteError,
    WriteTimeout,
)
from .messages import Headers, Request, Response, Timeout
from .roundtrip import Layer, RequestLayer, RoundTripper

__version__ = "0.1.0"

#: True when every hot path was imported from its compiled twin (derived from what got imported).
COMPILED: bool = all(_importlib.import_module(f"{__name__}.{_n}").COMPILED for _n in _TWINS)


def __getattr__(name: str) -> object:
    # The engine pulls in pycurl; the sans-I/O core stays importable without it.
    if name in ("Client", "AsyncClient"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COMPILED",
    "AsyncClient",
    "BodyTooLarge",
    "Client",
    "ClientClosed",
    "ConnectError",
    "ConnectTimeout",
    "Headers",
    "InvalidURL",
    "Layer",
    "OCITransportError",
    "PoolTimeout",
    "ProtocolError",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "RedirectError",
    "Request",
    "RequestCancelled",
    "RequestLayer",
    "Response",
    "RoundTripper",
    "TLSError",
    "Timeout",
    "TimeoutError",
    "TransportError",
    "UnsupportedProtocol",
    "WriteError",
    "WriteTimeout",
]
