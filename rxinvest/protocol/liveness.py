"""The watchdog's arithmetic, shared by every session: when does a silent stream count as dead.

A stream that says nothing (no data, no ping) for ``watchdog_factor`` ping intervals is dead: 2 by
default, so that with the client's 15 s pings a stall is noticed within 30 s and the new connection
opens well within 2.5 intervals.

:class:`ServerClock` reads the server's clock off its pings (every stream's ``Ping`` carries the
server's ``time``): the offset, server time minus the local time the ping was received, of the
latest ping. Why the latest and not a min or median over recent pings:

* A ping's transit delay makes its offset smaller than the true one (it was stamped before it
  arrived), so the estimate errs towards an earlier server time: towards a wider recovery window,
  never a narrower one. The error is the delay: milliseconds, far inside the recovery's slack.
* A max over a window (the least delayed ping, as NTP filters) would be tighter, but after the
  server's clock steps back (or ours forward) it would keep a stale, too large offset for the
  window's length: the direction that loses events. A median has the same lag. The latest ping
  follows steps and a clock that runs at another rate (the simulator's ``speed``) at once.
* Between pings the two clocks may drift apart: by (rate difference) x (time since the ping). With
  real clocks that is nil; a server clock running faster (the simulator at ``speed`` > 1) makes the
  estimate earlier (safe), a slower one later by at most that product, which the slack must cover.
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["DEFAULT_PING_DELAY", "Liveness", "ServerClock", "on_server_clock"]

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


class ServerClock:
    """The server's clock as one connection's pings tell it (see the module docstring): ``offset``
    is the server's time minus the local receive time of the latest ping, None before one came."""

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset: timedelta | None = None

    def heard(self, server_time: datetime, now: datetime) -> None:
        """A ping stamped ``server_time`` by the server arrived at local time ``now``."""
        self.offset = server_time - now

    def server_time(self, local: datetime) -> datetime:
        """The server's time at local time ``local``: ``local`` itself if no ping came yet."""
        return on_server_clock(local, self.offset)


def on_server_clock(local: datetime, offset: timedelta | None) -> datetime:
    """``local`` on the server's clock, given an ``offset``; with none (no ping yet), the fallback is
    the client's clock: ``local`` itself."""
    return local if offset is None else local + offset
