"""The watchdog's arithmetic, shared by every session: when does a silent stream count as dead.

A stream that says nothing (no data, no ping) for ``watchdog_factor`` ping intervals is dead: 2 by
default, so that with the client's 15 s pings a stall is noticed within 30 s and the new connection
opens well within 2.5 intervals.
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["DEFAULT_PING_DELAY", "Liveness"]

#: Seconds between server pings when the client asks for nothing (every stream's default).
DEFAULT_PING_DELAY = 120.0


class Liveness:
    """Tracks the last sign of life; ``deadline`` is ``watchdog_factor`` ping intervals after it."""

    def __init__(self, ping_delay: float | None, watchdog_factor: float) -> None:
        self.ping_delay = ping_delay
        self.watchdog_factor = watchdog_factor
        self._last_received: datetime | None = None

    def alive(self, now: datetime) -> None:
        self._last_received = now

    def deadline(self) -> datetime | None:
        """When the stream counts as silent (a watchdog should reconnect), or None before it opened."""
        if self._last_received is None:
            return None
        return self._last_received + timedelta(
            seconds=self.watchdog_factor * (self.ping_delay or DEFAULT_PING_DELAY)
        )
