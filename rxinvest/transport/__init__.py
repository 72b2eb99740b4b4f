"""Real I/O: a WebSocket connection per stream with its reader thread, and an in-memory stand-in;
and :class:`RestClient`, the unary methods over the REST gateway (gap recovery).

The stream transports implement the :class:`~rxinvest.transport.base.Transport` protocol of
``transport/base.py``, whose :class:`~rxinvest.transport.base.Listener` is the connection that owns them.
"""

from rxinvest.transport.base import Listener, Tap, Transport, TransportFactory
from rxinvest.transport.memory import MemoryTransport
from rxinvest.transport.rest import RestClient
from rxinvest.transport.websocket import WebSocketTransport

__all__ = [
    "Listener",
    "MemoryTransport",
    "RestClient",
    "Tap",
    "Transport",
    "TransportFactory",
    "WebSocketTransport",
]
