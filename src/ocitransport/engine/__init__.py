"""The I/O engine: one ``pycurl.CurlMulti`` drives every transfer of a Client.

``loop`` holds ``Engine`` and the drive loop; ``transfer`` one request on its way; ``options`` the pooled
handles and their libcurl options; ``uploads`` request bodies; ``stream`` streaming response bodies;
``future`` what ``submit`` returns; ``driver`` the protocol the last three call back through.
"""

from __future__ import annotations

from .driver import Driver
from .future import EngineFuture
from .loop import BLOCK_RECHECK, GRACE, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEAD_LINE, MAX_WAIT, STALL_CHECK, Engine
from .options import HEADER_LIST_BYTES, HEADER_LISTS, RECV_BUFFER, SEND_BUFFER, system_ca
from .stream import HIGH_WATER, LOW_WATER, BodyStream
from .transfer import Group
from .uploads import UPLOAD_HIGH_WATER, UPLOAD_LOW_WATER

__all__ = [
    "BLOCK_RECHECK", "GRACE", "HEADER_LISTS", "HEADER_LIST_BYTES", "HIGH_WATER", "LOW_WATER", "MAX_RESPONSE_HEAD",
    "MAX_RESPONSE_HEAD_LINE", "MAX_WAIT", "RECV_BUFFER", "SEND_BUFFER", "STALL_CHECK", "UPLOAD_HIGH_WATER",
    "UPLOAD_LOW_WATER", "BodyStream", "Driver", "Engine", "EngineFuture", "Group", "system_ca",
]
