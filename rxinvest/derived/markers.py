"""Markers: what a source says in-band about its own delivery, between its events.

A source sends markers only when asked (``source.with_markers()``): plain subscribers see events and
nothing else. An operator that must know about losses (a book rebuilt from snapshots, bars, a
position ledger) asks for them, and refuses a source without them: the first item of a source with
markers is always :class:`Subscribed`.

Rules:

* A :class:`Gap` stands exactly where the loss is: events before it were delivered, events after it
  came after the loss. Its ``since``/``until`` bound the time in which events may be missing.
* Markers are never conflated and never dropped, whatever the source's backpressure policy.
* Order states, fills, positions and portfolios are never dropped by rxinvest; for them a gap
  means the connection was down (``RECONNECT``), never an overflow.
* An account source with gap recovery follows each such :class:`Gap` with a :class:`Recovered`
  for the same ``target``: the events between the two are what the unary API says changed while the
  stream was down (de-duplicated against what did arrive), and the events after it are the live
  ones that waited meanwhile, in order. A ``Recovered`` without ``error`` closes the gap before it;
  with ``error`` set the gap stays open: the events before it may be incomplete.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TypeAlias

import attrs

__all__ = ["Gap", "GapCause", "Marker", "Recovered", "Refused", "Subscribed"]


class GapCause(enum.Enum):
    RECONNECT = "reconnect"  # the connection was lost: the server kept nothing while it was down
    OVERFLOW = "overflow"  # the subscriber fell behind its backlog limit: the oldest waiting events went


@attrs.frozen(kw_only=True)
class Subscribed:
    """The first item of a source with markers: it is live. ``stream`` is the stream's method name
    (``"MarketDataStream"`` ...), ``targets`` the instrument or account ids as you gave them."""

    stream: str
    targets: tuple[str, ...]


@attrs.frozen(kw_only=True)
class Gap:
    """Events of this source may be missing between ``since`` and ``until`` (aware UTC).

    * ``RECONNECT``: ``since`` is the last sign of life of the lost connection, ``until`` the moment
      the subscription was confirmed again; ``dropped`` is 0 (unknown: nothing was counted).
    * ``OVERFLOW``: the subscriber lagged more than its backlog limit; ``dropped`` events were
      discarded, the oldest first, and ``since``/``until`` are the first and last of their times.

    ``target`` is the instrument or account id concerned as you gave it, and ``instrument_uid`` the
    instrument's uid (events carry it), or both ``""`` for all of the source's.
    """

    cause: GapCause
    since: datetime
    until: datetime
    dropped: int = 0
    target: str = ""
    instrument_uid: str = ""


@attrs.frozen(kw_only=True)
class Refused:
    """The API refused ``target`` (an instrument or account id as you gave it); the source goes on
    with its other targets. ``status`` is the API's status name, ``message`` what the error says."""

    target: str
    status: str
    message: str


@attrs.frozen(kw_only=True)
class Recovered:
    """What the unary API said about the :class:`Gap` of ``target`` (an account id) that came just
    before, over the same ``since``/``until`` (aware UTC): ``events`` events were recovered and stand
    between the two markers, in order, each one that the stream had not delivered.

    ``error`` empty: the gap is closed, nothing of it is missing. ``error`` set (what failed, never a
    token): the recovery stopped there; the gap stays open and the ``events`` before it may be
    incomplete. Either way the live events that waited for the recovery follow it.
    """

    target: str
    since: datetime
    until: datetime
    events: int = 0
    error: str = ""


#: Anything a source says about itself in-band.
Marker: TypeAlias = Subscribed | Gap | Refused | Recovered
