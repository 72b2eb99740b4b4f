"""Real I/O: a WebSocket connection per stream with its reader thread, and an in-memory stand-in."""

from rxinvest.transport.memory import MemoryTransport
from rxinvest.transport.websocket import Listener, WebSocketTransport

__all__ = ["Listener", "MemoryTransport", "WebSocketTransport"]
