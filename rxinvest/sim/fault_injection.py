"""How one connection applies its :class:`~rxinvest.sim.faults.Faults`: the decisions, sans-I/O.

The connection's shell (:mod:`rxinvest.sim.connection`) owns the socket, the tasks and the clock; it
asks this module what a fault does and carries it out:

* :class:`FaultInjector` keeps one connection's fault state (the faults in force, frames sent,
  stalled or not) and answers per frame: is a malformed frame due before it, and what happens once
  it is sent (:func:`after_frames`);
* :func:`timetable` lists the time-based faults in the order they fire;
* :func:`close_on_request` gives the code of a close fault that fires on the first request;
* :func:`distort_book` crosses or thins a book, as ``crossed_books`` and ``inconsistent_books`` ask,
  and logs each :class:`InjectedBook` (the ground truth a test of book health checks against).

Rules: counts are of real frames sent (an extra malformed frame is not counted), from when the
faults came into force (the connection's opening, or :meth:`FaultInjector.replace`); a stalled
connection sends and counts nothing more, until new faults replace the old; when several count
faults are due at once, drop comes before stall and stall before close. Randomness comes only from
the ``random.Random`` passed in, seeded per connection, so a seed replays the same faults.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from datetime import datetime
from decimal import Decimal

import attrs

from rxinvest import model as m
from rxinvest.sim.faults import Faults, malformed_frame

__all__ = [
    "FaultAction",
    "FaultInjector",
    "InjectedBook",
    "after_frames",
    "close_on_request",
    "distort_book",
    "timetable",
]


@attrs.frozen
class InjectedBook:
    """A book snapshot distorted on purpose: ``kind`` is ``"crossed"`` or ``"inconsistent"``."""

    instrument_uid: str
    depth: int
    time: datetime | None
    kind: str


class FaultAction(enum.Enum):
    """What a count or time fault does to the connection."""

    DROP = "drop"  # cut the TCP connection without a close frame
    STALL = "stall"  # go silent (no data, no pings), keep the socket open
    CLOSE = "close"  # close cleanly with the fault's close code


def after_frames(faults: Faults, sent: int) -> FaultAction | None:
    """What happens once ``sent`` frames have gone out: the first fault due, or None."""
    if faults.drop_after is not None and sent >= faults.drop_after:
        return FaultAction.DROP
    if faults.stall_after is not None and sent >= faults.stall_after:
        return FaultAction.STALL
    if faults.close_code is not None and faults.close_after is not None and sent >= faults.close_after:
        return FaultAction.CLOSE
    return None


def timetable(faults: Faults) -> list[tuple[float, FaultAction]]:
    """The time faults as (seconds after the connection opened, action), earliest first."""
    close_at = faults.close_at if faults.close_code is not None else None
    due = [
        (at, action)
        for at, action in (
            (faults.drop_at, FaultAction.DROP),
            (faults.stall_at, FaultAction.STALL),
            (close_at, FaultAction.CLOSE),
        )
        if at is not None
    ]
    # At one instant, a clean close comes before a drop, and both before a stall.
    return sorted(due, key=lambda item: (item[0], item[1].value))


def close_on_request(faults: Faults) -> int | None:
    """The close code of a close fault that has neither a count nor a time: it fires on the first
    request (``close_after`` 0 in effect). None when there is no such fault."""
    if faults.close_after is None and faults.close_at is None:
        return faults.close_code
    return None


def distort_book(
    book: m.OrderBook, faults: Faults, rng: random.Random, log: deque[InjectedBook] | None = None
) -> m.OrderBook:
    """``book`` as a connection with ``faults`` sees it: crossed or thinned now and then, and then
    flagged ``is_consistent=False``; each distortion is appended to ``log``. Without book faults,
    ``book`` itself (no random draw)."""
    kind = ""
    if faults.crossed_books and rng.random() < faults.crossed_books and book.bids and book.asks:
        worst_ask = book.asks[-1].price
        assert worst_ask is not None  # the market prices every level
        crossed = m.Order(price=worst_ask + Decimal(1), quantity=1)  # a bid above every ask
        book, kind = attrs.evolve(book, bids=(crossed, *book.bids[:-1]), is_consistent=False), "crossed"
    elif faults.inconsistent_books and rng.random() < faults.inconsistent_books and len(book.bids) > 2:
        book, kind = attrs.evolve(book, bids=book.bids[::2], is_consistent=False), "inconsistent"
    if kind and log is not None:
        log.append(InjectedBook(book.instrument_uid, book.depth, book.time, kind))
    return book


class FaultInjector:
    """The fault state of one connection. Not thread-safe: the connection's loop owns it.

    ``frames_sent`` counts every frame of the connection; the faults count from when they came into
    force (:meth:`replace`). ``stalled`` is set by the shell when a stall fault fires (by count or
    by time).
    """

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self.faults = faults
        self.frames_sent = 0
        self.stalled = False
        self._rng = rng
        self._frames_before = 0  # frames sent before the faults in force came into force

    def replace(self, faults: Faults) -> None:
        """Put ``faults`` in force from now on: their counts start at zero, and a stall ends."""
        self.faults = faults
        self._frames_before = self.frames_sent
        self.stalled = False

    def malformed_before(self, frame: str) -> str | None:
        """The malformed frame to send before ``frame`` (built from it), if one is due."""
        every = self.faults.malformed_every
        if not every or (self.frames_sent - self._frames_before + 1) % every:
            return None
        kind = self._rng.choice(self.faults.malformed_kinds)
        return malformed_frame(kind, frame, self._rng)

    def sent(self) -> FaultAction | None:
        """Count one frame sent; returns the fault that is due now, if any."""
        self.frames_sent += 1
        return after_frames(self.faults, self.frames_sent - self._frames_before)
