"""An in-memory transport for tests: the test plays the server, with a real reader thread.

It behaves like :class:`~rxinvest.transport.WebSocketTransport` towards its listener (the same calls,
on a thread of its own), but frames come from :meth:`MemoryTransport.push` and what the client sends
lands in :attr:`MemoryTransport.sent`.
"""

from __future__ import annotations

import queue
import threading
from datetime import UTC, datetime
from typing import Any

from rxinvest.errors import ClientClosedError, RxInvestError
from rxinvest.protocol import classify_close
from rxinvest.transport.base import Listener
from rxinvest.wire import Stream

__all__ = ["MemoryTransport"]

_CLOSE = object()


class MemoryTransport:
    """A scripted server on the other end of a listener. Thread-safe.

    A :class:`~rxinvest.transport.base.Transport`, and its own factory:
    ``Client(transport_factory=MemoryTransport)`` works (``stream`` and ``url`` are kept for
    inspection only).
    """

    def __init__(self, listener: Listener, *, stream: Stream | None = None, url: str = "") -> None:
        self.stream = stream
        self.url = url
        self._listener = listener
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._open = threading.Event()
        self._lock = threading.Lock()
        self.sent: list[str] = []
        self.connections = 0
        self._connected = False

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        # Like the real transport, start() does not wait for the connection: the caller may hold the
        # lock that the listener's ``opened`` needs.
        self._thread = threading.Thread(target=self._run, name="rxinvest-memory-reader", daemon=True)
        self._thread.start()

    def send(self, frames: list[str]) -> None:
        if self._connected:
            with self._lock:
                self.sent.extend(frames)

    def close(self, timeout: float = 5.0) -> None:
        self._inbox.put((_CLOSE, ClientClosedError("closed by the client")))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # --- the test's side -----------------------------------------------------------------------------

    def push(self, *frames: str | bytes) -> None:
        """Frames from the server, delivered in order on the reader thread."""
        for frame in frames:
            self._inbox.put(frame.encode() if isinstance(frame, str) else frame)

    def close_from_server(self, code: int | None, reason: str = "") -> None:
        """The server ends the connection; final or not as the real transport would decide."""
        self._inbox.put((_CLOSE, classify_close(code, reason)[0]))

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block until every frame pushed so far has been handed to the listener (and flushed)."""
        done = threading.Event()
        self._inbox.put(done)
        if not done.wait(timeout):
            raise TimeoutError("the memory transport's reader is stuck")

    def _run(self) -> None:
        self.connections += 1
        self._connected = True
        self._listener.opened(datetime.now(UTC))
        self._open.set()
        error: RxInvestError = ClientClosedError("closed by the client")
        while True:
            item = self._inbox.get()
            if isinstance(item, threading.Event):
                self._listener.flush()  # everything before the marker is handed over
                item.set()
            elif isinstance(item, tuple) and item[0] is _CLOSE:
                error = item[1]
                break
            else:
                self._listener.frame(item, datetime.now(UTC))
                if self._inbox.empty():
                    self._listener.flush()
        self._open.clear()
        self._connected = False
        self._listener.closed(error)
