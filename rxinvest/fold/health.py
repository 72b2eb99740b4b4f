"""Order-book health, sans-I/O: the logic of ``ops.book_health``, with every time passed in.

Rules of this module:

1. **Problems of a snapshot** (:func:`problems_of`, pure). ``CROSSED`` if the best bid is above the
   best ask, ``LOCKED`` if they are equal (both need a level on each side; a side whose best level
   has no price counts as empty); ``INCONSISTENT`` if the snapshot says ``is_consistent=False``;
   ``OUTSIDE_LIMITS`` if a level is priced below ``limit_down`` or above ``limit_up`` (each when
   given). Sides are taken in the API's order (bids best first, descending; asks best first,
   ascending), so only the two ends of each side are compared with the limits, and of a book not
   crossed only the outer ends (the worst bid and ask).
2. **The state** of an instrument is the pair (problems, expected); the fold emits exactly one
   :class:`~rxinvest.derived.BookHealth` per change of it (edge-triggered), never one per book. The
   first state of an instrument is always emitted (it changes from "unknown"), a healthy one
   included; an instrument known only by its trading status has no state and emits nothing.
3. **Snapshots.** A snapshot replaces the instrument's problems by its own (rule 1): it clears
   ``NO_BOOK``, ``RESET`` and ``STALE``. Its events carry the snapshot's time.
4. **No book yet.** :meth:`HealthFold.subscribed` makes an instrument without a state ``{NO_BOOK}``
   until its first snapshot (the API sends a book only after a change). It changes nothing for an
   instrument that has a state already (a repeated subscription; after a gap ``RESET`` says more).
5. **Gaps.** :meth:`HealthFold.gap` makes the state ``{RESET}`` and nothing else, until the next
   snapshot; ``""`` means every instrument that has a state.
6. **Staleness.** An instrument is ``STALE`` once ``stale_after`` (or more: exactly ``stale_after``
   counts) has passed on the scheduler's clock since its last snapshot, subscription, gap, or the
   status with which it resumed normal trading, while it trades normally: its last status is in
   :data:`NORMAL_TRADING`, or unknown (none given, or ``UNSPECIFIED``). ``STALE`` joins the other
   problems and lasts until a snapshot or a gap. An instrument not trading normally is never stale:
   a status that stops normal trading clears ``STALE``, and one that resumes it restarts the clock.
   :meth:`HealthFold.advance` marks what is due; :attr:`HealthFold.next_deadline` is the earliest
   instant at which it has work, so a caller keeps one timer for all instruments.
7. **Expected problems** (:func:`expected`, pure). A state is ``expected`` when it has problems,
   all of them ``CROSSED`` or ``LOCKED``, and the instrument's last status is in :data:`AUCTION`: an
   auction's book is crossed until it clears (T-Invest streams such books, e.g. in the 18:40–18:50
   closing auction). A change of status can change ``expected`` alone, and that is a change of
   state (rule 2). Books and statuses come on separate subscriptions, so either may overtake the
   other: a book is judged under the status in force at its exchange time, the last one received
   or, for a book older than that status, the one before it (a crossed book of an auction that
   arrives after the status that ended it is still expected). A book that overtakes the status
   that began its auction is a fault until that status arrives, then expected (one more event).
8. **Time.** Events of a snapshot carry its time; those of a status, subscription, gap or timer
   carry the ``now`` passed in (the scheduler's). ``now`` never goes back.
9. **Cost.** One entry per instrument, and at most one pending deadline each. A snapshot with the
   problems of the one before allocates nothing but the empty list it returns: problem sets come
   from a table, and the staleness deadlines (a heap) are corrected lazily, when looked at. A
   healthy snapshot (the common one) is recognised by :func:`problems_of` in one chained comparison
   of its outer prices, before the general path.
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta
from decimal import Decimal

from rxinvest.derived import BookHealth, BookProblem
from rxinvest.errors import ConfigurationError
from rxinvest.model import Order, OrderBook, SecurityTradingStatus, TradingStatus

__all__ = ["AUCTION", "NORMAL_TRADING", "HealthFold", "expected", "problems_of"]

_S = SecurityTradingStatus
_P = BookProblem

#: The statuses of an auction (or of a period where the book is an auction's): a crossed or locked
#: book is normal then. ``TRADING_AT_CLOSING_AUCTION_PRICE`` follows the closing auction, whose
#: uncleared orders may still cross (the 18:40–18:50 reports span both).
AUCTION: frozenset[SecurityTradingStatus] = frozenset(
    {
        _S.SECURITY_TRADING_STATUS_OPENING_PERIOD,
        _S.SECURITY_TRADING_STATUS_OPENING_AUCTION_PERIOD,
        _S.SECURITY_TRADING_STATUS_CLOSING_PERIOD,
        _S.SECURITY_TRADING_STATUS_CLOSING_AUCTION,
        _S.SECURITY_TRADING_STATUS_DISCRETE_AUCTION,
        _S.SECURITY_TRADING_STATUS_DARK_POOL_AUCTION,
        _S.SECURITY_TRADING_STATUS_TRADING_AT_CLOSING_AUCTION_PRICE,
    }
)
#: The statuses of continuous trading, the only ones in which a silent book is stale (rule 6).
NORMAL_TRADING: frozenset[SecurityTradingStatus] = frozenset(
    {_S.SECURITY_TRADING_STATUS_NORMAL_TRADING, _S.SECURITY_TRADING_STATUS_DEALER_NORMAL_TRADING}
)
# Rule 6: normal trading, or no status known.
_LIVE: frozenset[SecurityTradingStatus | None] = NORMAL_TRADING | {
    None,
    _S.SECURITY_TRADING_STATUS_UNSPECIFIED,
}

_CROSSED, _LOCKED, _INCONSISTENT, _OUTSIDE = 1, 2, 4, 8
# Every set rule 1 can find, indexed by its bit mask: a snapshot's problems are never built anew.
_TABLE: tuple[frozenset[BookProblem], ...] = tuple(
    frozenset(
        problem
        for bit, problem in (
            (_CROSSED, _P.CROSSED),
            (_LOCKED, _P.LOCKED),
            (_INCONSISTENT, _P.INCONSISTENT),
            (_OUTSIDE, _P.OUTSIDE_LIMITS),
        )
        if mask & bit
    )
    for mask in range(16)
)
_HEALTHY = _TABLE[0]
_NO_BOOK = frozenset({_P.NO_BOOK})
_RESET = frozenset({_P.RESET})
_STALE = frozenset({_P.STALE})
_AUCTION_PROBLEMS = frozenset({_P.CROSSED, _P.LOCKED})


def problems_of(book: OrderBook) -> frozenset[BookProblem]:
    """The problems of one snapshot by itself (rule 1). Returns one of a fixed set of frozensets."""
    bids, asks = book.bids, book.asks
    up, down = book.limit_up, book.limit_down
    if bids and asks and up is not None and down is not None and book.is_consistent:
        # The common case, healthy, in one chained test: not crossed, and the outer ends (so every
        # level) within the limits. A level without a price at an end raises TypeError, and the
        # general path below decides.
        try:
            if down <= bids[-1].price and bids[0].price < asks[0].price and asks[-1].price <= up:  # type: ignore[operator]
                return _HEALTHY
        except TypeError:
            pass
    mask = 0 if book.is_consistent else _INCONSISTENT
    limited = up is not None or down is not None
    if bids and asks:
        best_bid, best_ask = bids[0].price, asks[0].price
        if best_bid is not None and best_ask is not None:
            crossed = not best_bid < best_ask  # the common case costs one comparison
            if crossed:
                mask |= _LOCKED if best_bid == best_ask else _CROSSED
            if not limited:
                return _TABLE[mask]
            worst_bid, worst_ask = bids[-1].price, asks[-1].price
            if worst_bid is not None and worst_ask is not None:  # the ends of sorted sides
                # Not crossed, worst_bid <= best_bid < best_ask <= worst_ask: the outer ends decide.
                if (up is not None and (worst_ask > up or (crossed and best_bid > up))) or (
                    down is not None and (worst_bid < down or (crossed and best_ask < down))
                ):
                    mask |= _OUTSIDE
                return _TABLE[mask]
    if limited and _outside(bids, asks, up, down):
        mask |= _OUTSIDE
    return _TABLE[mask]


def _outside(
    bids: tuple[Order, ...], asks: tuple[Order, ...], up: Decimal | None, down: Decimal | None
) -> bool:
    """Whether a priced level lies outside the limits, looking at every level (the rare case: a
    one-sided book, or a level without a price)."""
    for level in (*bids, *asks):
        price = level.price
        if price is not None and ((up is not None and price > up) or (down is not None and price < down)):
            return True
    return False


def expected(problems: frozenset[BookProblem], status: SecurityTradingStatus | None) -> bool:
    """Whether ``problems`` are normal under the trading ``status`` (rule 7): there are some, all
    crossed or locked, during an auction."""
    return bool(problems) and problems <= _AUCTION_PROBLEMS and status in AUCTION


class _Entry:
    """What the fold knows of one instrument."""

    __slots__ = (
        "base",
        "before",
        "book_time",
        "current",
        "older",
        "queued",
        "seen",
        "since",
        "stale",
        "status",
    )

    def __init__(self, seen: datetime) -> None:
        self.base: frozenset[BookProblem] | None = None  # problems but STALE; None: no state (rule 2)
        self.stale = False
        self.status: SecurityTradingStatus | None = None  # the last status received
        self.since: datetime | None = None  # its exchange time
        self.before: SecurityTradingStatus | None = None  # the status before it
        self.book_time: datetime | None = None  # the exchange time of the book the state is of
        self.older = False  # that book is older than ``since``: judged under ``before`` (rule 7)
        self.seen = seen  # where the stale clock started (rule 6)
        self.queued = False  # has an entry in the deadline heap
        self.current: BookHealth | None = None  # the last event: the state as emitted


class HealthFold:
    """Books, trading statuses, subscriptions, gaps and timer ticks of any number of instruments in;
    :class:`~rxinvest.derived.BookHealth` changes out (the rules at the top of the module).

    ``stale_after`` (a positive ``timedelta``) is how long a normally trading instrument may go
    without a snapshot. Not thread-safe: one per subscription.

    One timer serves every instrument: set it to :attr:`next_deadline`, and read that again after
    :meth:`advance`, :meth:`status`, :meth:`subscribed`, :meth:`gap`, and a :meth:`book` that
    returned an event. Only those move the deadline earlier; a snapshot that changes nothing only
    moves it later, so a timer set before it fires early at worst, and :meth:`advance` then marks
    nothing and the deadline read after it is right again.
    """

    def __init__(self, stale_after: timedelta) -> None:
        if not isinstance(stale_after, timedelta) or stale_after <= timedelta(0):
            raise ConfigurationError(f"stale_after must be a positive timedelta, not {stale_after!r}")
        self.stale_after = stale_after
        self._entries: dict[str, _Entry] = {}
        # (deadline, uid), at most one per instrument (``_Entry.queued``). A deadline may be early
        # (a snapshot came since) but never late; next_deadline and advance correct it lazily.
        self._heap: list[tuple[datetime, str]] = []

    # --- inputs -----------------------------------------------------------------------------------

    def book(self, book: OrderBook, now: datetime) -> list[BookHealth]:
        """A snapshot received at scheduler time ``now`` (rules 1, 3)."""
        uid = book.instrument_uid
        entry = self._entries.get(uid)
        problems = problems_of(book)
        time = book.time
        if entry is not None:
            since = entry.since
            older = since is not None and time is not None and time < since
            if entry.base is problems and not entry.stale and older is entry.older:
                entry.seen, entry.book_time = now, time  # the hot path: nothing changed (the deadline
                return []  # is corrected lazily)
        else:
            entry = self._entries[uid] = _Entry(now)
            older = False
        entry.base, entry.stale, entry.seen, entry.book_time, entry.older = problems, False, now, time, older
        self._arm(entry, uid)
        return self._emit(entry, uid, book.time)

    def status(self, status: TradingStatus, now: datetime) -> list[BookHealth]:
        """A trading status received at ``now``: remembered for the instrument; it may change
        ``expected`` (rule 7) or staleness (rule 6)."""
        uid = status.instrument_uid
        entry = self._entries.get(uid)
        if entry is None:
            entry = self._entries[uid] = _Entry(now)
        was_live = entry.status in _LIVE
        entry.before, entry.status, entry.since = entry.status, status.trading_status, status.time
        book_time = entry.book_time
        entry.older = book_time is not None and status.time is not None and book_time < status.time
        live = entry.status in _LIVE
        if entry.base is None:
            return []
        if was_live and not live:
            entry.stale = False  # its heap entry is dropped when looked at
        elif live and not was_live:
            entry.seen = now
            self._arm(entry, uid)
        return self._emit(entry, uid, now)

    def subscribed(self, instrument_uid: str, now: datetime) -> list[BookHealth]:
        """The instrument's book was subscribed at ``now``: ``{NO_BOOK}`` until its first snapshot,
        unless it has a state already (rule 4)."""
        entry = self._entries.get(instrument_uid)
        if entry is None:
            entry = self._entries[instrument_uid] = _Entry(now)
        elif entry.base is not None:
            return []
        entry.base, entry.stale, entry.seen, entry.book_time, entry.older = _NO_BOOK, False, now, None, False
        self._arm(entry, instrument_uid)
        return self._emit(entry, instrument_uid, now)

    def gap(self, instrument_uid: str, now: datetime) -> list[BookHealth]:
        """Snapshots of the instrument (``""``: of every instrument with a state) may have been lost
        up to ``now``: ``{RESET}`` until the next snapshot (rule 5)."""
        if instrument_uid:
            if instrument_uid not in self._entries:
                self._entries[instrument_uid] = _Entry(now)
            uids = [instrument_uid]
        else:
            uids = [uid for uid, entry in self._entries.items() if entry.base is not None]
        out: list[BookHealth] = []
        for uid in uids:
            entry = self._entries[uid]
            entry.base, entry.stale, entry.seen, entry.book_time, entry.older = (
                _RESET,
                False,
                now,
                None,
                False,
            )
            self._arm(entry, uid)
            out += self._emit(entry, uid, now)
        return out

    def forget(self, instrument_uid: str) -> None:
        """Drop the instrument's state, silently: an id it was known by until its book named it (an
        operator learns the uid of a ticker it subscribed only from the first snapshot)."""
        self._entries.pop(instrument_uid, None)  # its heap entry is dropped when looked at

    def advance(self, now: datetime) -> list[BookHealth]:
        """The scheduler says ``now``: mark ``STALE`` every instrument due (rule 6), in the order of
        their deadlines."""
        out: list[BookHealth] = []
        heap = self._heap
        while (deadline := self._top()) is not None and deadline <= now:
            _, uid = heapq.heappop(heap)
            entry = self._entries[uid]
            entry.queued, entry.stale = False, True
            out += self._emit(entry, uid, now)
        return out

    # --- outputs ----------------------------------------------------------------------------------

    @property
    def next_deadline(self) -> datetime | None:
        """The earliest instant at which :meth:`advance` marks something stale, or None (nothing
        can be until a snapshot, status, subscription or gap comes). Exact; it costs a heap
        operation for each instrument whose deadline moved since it was last read, so read it when
        the class docstring says, not after every snapshot."""
        return self._top()

    def current(self, instrument_uid: str) -> BookHealth | None:
        """The instrument's state as last emitted, or None if it has none (rule 2)."""
        entry = self._entries.get(instrument_uid)
        return None if entry is None else entry.current

    def healthy(self, instrument_uid: str) -> bool:
        """Whether the instrument has a state and it has no problems."""
        entry = self._entries.get(instrument_uid)
        return entry is not None and entry.current is not None and not entry.current.problems

    def instruments(self) -> list[str]:
        """The instruments with a state."""
        return [uid for uid, entry in self._entries.items() if entry.current is not None]

    # --- internals --------------------------------------------------------------------------------

    def _arm(self, entry: _Entry, uid: str) -> None:
        """Keep the heap's invariant: an instrument that can go stale has a (possibly early) deadline."""
        if not entry.queued and not entry.stale and entry.base is not None and entry.status in _LIVE:
            heapq.heappush(self._heap, (entry.seen + self.stale_after, uid))
            entry.queued = True

    def _top(self) -> datetime | None:
        """The heap's first deadline, once it is exact: entries of instruments that cannot go stale
        are dropped, and early deadlines moved to where their clock says."""
        heap, entries, stale_after = self._heap, self._entries, self.stale_after
        while heap:
            deadline, uid = heap[0]
            entry = entries.get(uid)
            if entry is None:  # forgotten
                heapq.heappop(heap)
                continue
            if entry.stale or entry.status not in _LIVE:
                heapq.heappop(heap)
                entry.queued = False
                continue
            actual = entry.seen + stale_after
            if actual == deadline:
                return deadline
            heapq.heapreplace(heap, (actual, uid))
        return None

    def _emit(self, entry: _Entry, uid: str, time: datetime | None) -> list[BookHealth]:
        """An event if the entry's state differs from the one last emitted (rule 2)."""
        base = entry.base
        assert base is not None
        problems = base | _STALE if entry.stale else base
        judged = entry.before if entry.older else entry.status  # the status in force at the book's time
        is_expected = expected(problems, judged)
        current = entry.current
        if current is not None and current.problems == problems and current.expected == is_expected:
            return []
        entry.current = BookHealth(
            instrument_uid=uid,
            time=time,
            problems=problems,
            expected=is_expected,
            trading_status=judged,
        )
        return [entry.current]
