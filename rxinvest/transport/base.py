"""The seam between a stream connection and what carries its frames: :class:`Listener` (the owner,
called by the transport) and :class:`Transport` (called by the owner).

Every transport implements :class:`Transport`: the WebSocket one, the in-memory one for tests, and
replay. A transport owns one thread that calls the listener; the listener never blocks it on user
code. :class:`TransportFactory` is what ``Client(transport_factory=...)`` takes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from rxinvest.errors import RxInvestError
from rxinvest.wire import Stream

__all__ = ["Listener", "Tap", "Transport", "TransportFactory"]


class Listener(Protocol):
    """The transport's owner. Every method is called on the transport's thread."""

    def opened(self, now: datetime) -> None:
        """The connection is open: send the first frames (with :meth:`Transport.send`)."""

    def frame(self, data: bytes, now: datetime) -> None:
        """One text frame, as received at ``now`` (UTF-8 is checked by the decoder, not here)."""

    def flush(self) -> None:
        """No more frames are waiting to be read: hand over what the frames produced."""

    def deadline(self) -> datetime | None:
        """When the connection counts as silent."""

    def wanted(self) -> bool:
        """Is the connection still needed? When it is not, a lost connection is not re-opened."""

    def lost(self, error: RxInvestError, retrying: bool) -> None:
        """The connection ended; ``retrying`` tells whether a new one follows."""

    def closed(self, error: RxInvestError) -> None:
        """The thread ends: a final error, or ClientClosedError after :meth:`Transport.close`."""


class Transport(Protocol):
    """One logical stream connection, reconnecting as it sees fit, reporting to its listener."""

    @property
    def running(self) -> bool:
        """Is its thread alive (connected, connecting or waiting to reconnect)?"""

    @property
    def is_open(self) -> bool:
        """Is a connection open now?"""

    def start(self) -> None:
        """Start the thread; it connects. Must not wait for the connection (the caller may hold the
        lock that the listener's ``opened`` takes)."""

    def send(self, frames: list[str]) -> None:
        """Send frames if connected, from any thread; while down they are dropped (the listener
        redoes its state in ``opened``)."""

    def close(self, timeout: float = 5.0) -> None:
        """Close for good and wait up to ``timeout`` seconds for the thread; the listener hears
        ClientClosedError."""


class TransportFactory(Protocol):
    """Makes the transport of one stream for ``listener``: ``Client(transport_factory=...)``."""

    def __call__(self, listener: Listener, *, stream: Stream, url: str) -> Transport: ...


class Tap(Protocol):
    """Stands between a stream connection and its transport to watch the traffic (a recorder):
    ``Client(tap=...)``. It makes the transport with ``factory`` for a listener of its own that
    passes every call on to ``listener``, and returns a transport that passes every call on to it.

    The transport it returns may also have ``note(marker)``: the connection then tells it of the
    in-band markers (gaps) it makes for its subscribers.
    """

    def __call__(
        self, listener: Listener, *, stream: Stream, url: str, factory: TransportFactory
    ) -> Transport: ...
