"""Position reconciliation, sans-I/O: the fills of the order stream against the positions stream,
with every time passed in (``now``, the scheduler's) and no Rx.

Rules of this module:

1. **Positions.** A position is a security of an account (key: ``instrument_uid``) or a currency of
   an account (key: the currency, lower-case; ``instrument_uid`` ``""``). Its ``expected`` is the
   last base plus the fills since; its ``reported`` is balance + blocked as last reported, in units
   (money: ``available_value`` + ``blocked_value``, so blocking by orders changes nothing). Futures
   and options positions count like securities.
2. **Fills** (:meth:`PositionLedger.order_state`). An order is keyed by ``order_request_id`` when
   the state has one, else by the key its ``order_id`` was last seen under, else by ``order_id``:
   the first state under a broker-internal id and the later ones under the exchange id are one
   order (the API gives both the same ``order_request_id``). The fill is the growth of the
   cumulative ``lots_executed`` since the largest seen for the order: a repeat or an older state
   gives nothing, and an order never goes backwards. Units = lots x ``lot_size``; with
   ``lot_size`` 0, the ``quantity`` of the trades not seen before (by ``trade_id``). Trades whose
   quantities fit neither reading (every fill so far, or this state's) are counted in
   :attr:`~PositionLedger.unit_mismatches`; lots x ``lot_size`` wins. A buy adds units, a sell
   removes them; a state with an unspecified direction is ignored (its lots are not taken).
   Cancels and rejections carry no new lots: they change nothing.
3. **Money of a fill** (only when ``money_tolerance`` is not None). The growth of the cumulative
   ``executed_order_price`` (the money of all fills so far, as the simulator and the docs' sample
   read it) in its currency (else ``currency``); a state without it uses price x quantity of its new
   trades (for bonds the price is percent of nominal: prefer ``executed_order_price``). A buy pays
   (-), a sell receives (+). **Commissions and taxes are not in the order stream**: a commission
   charged with the fill is absorbed when within ``money_tolerance``; one reported as its own money
   change is a change no fill explains (rule 6).
4. **Reports** (:meth:`PositionLedger.positions` with a ``PositionData``): each listed position's
   absolute value replaces ``reported``; the change from the previous value is a reported change.
   Reports apply in arrival order, whatever their dates: the stream keeps its order, while a
   broker's dates may come from two clocks (the simulator dates an order placed between two market
   steps after the next step's fills, so a real report may be dated before the last one). A report
   is ignored when the very same message (date and every position it lists, not just the value:
   two operations of one instant may leave a position at the same value) was applied before (a
   repeat; those of the position's 16 newest dates are remembered), or when it is dated before
   all of those 16 (a repeat forgotten).
5. **Matching** (by totals). Each fill and each reported change not yet matched is *pending* from
   its arrival (``now``), in arrival order per position. When the sum of the oldest one or more
   pending fills agrees (money: within the tolerance) with the sum of the oldest one or more
   pending reported changes, they are matched: the fewest fills, with the fewest changes for them.
   The positions stream shows the fills in their order, so its changes always sum to a prefix of
   the fills, whether one report shows several fills (two in one market step, or a report dropped
   as a repeat), one fill's money comes in several changes, reports come before their fills or
   other positions' events come between, and however rarely all the totals agree under
   continuous traffic. Changes that cancel out inside a matched group are netted (a transfer in
   and back out amid fills raises nothing); two reported changes that cancel out with no fill to
   go with are two unexplained changes (rule 6). A money change within the tolerance with nothing
   pending is matched at once. ``expected`` follows so that ``reported - expected`` is always
   (reported changes - fills) pending: MATCHED (nothing pending) means ``expected == reported``. A
   position with anything pending is PENDING.
6. **Timeout** (:meth:`PositionLedger.advance`, :attr:`PositionLedger.next_deadline`). A pending
   change ``timeout`` old (exactly ``timeout`` counts) is due, fills first, oldest first. What a
   prefix of the others cannot explain because of a stray change before its counterpart (a
   dividend, a fill never shown) is settled here. The due change is *judged* if the changes after
   it on its side agree by prefixes with the other side without it (it is the stray one);
   otherwise it is matched if, with the changes after it on its side, it agrees with a run of the
   other side that starts after at most 8 of its pending changes, not counting uncertain fills
   (rule 9), 64 at most in all (those passed over are set aside: they match nothing more and are
   judged at their own deadline), but not by passing over a change that a run (of up to 9) of the
   changes after it on its side could explain, nor in a bundle (several changes on either side)
   of which one has a counterpart of its own among the changes left out of the match; fills may
   also be matched with no change at all when they cancel out (one report of them shows no
   change), unless a run of the other side could explain one of the others. Else it is judged: a
   fill is MISSING, a reported change UNEXPLAINED (cause TIMEOUT; ``difference`` is the amount
   judged), once, at that instant; then ``expected`` is corrected by it (the positions stream is
   taken as the truth), matching resumes, and the position's new state follows (cause REBASE).
   Every input first runs :meth:`~PositionLedger.advance` to its ``now``, so verdicts never come
   after later events, whenever the timer fires.
7. **Snapshots.** A ``PositionsResponse`` re-bases every position of its account: ``reported`` =
   the snapshot's (0 for a known position it does not list), pending reported changes are dropped,
   pending fills stay but become *uncertain* (the snapshot may or may not hold them; a lagging
   portfolio may not) and are no longer set aside, and ``expected`` = ``reported`` + those fills;
   at their deadline they are written off unless matched by then (never matched further on by
   rule 6: having arrived before the snapshot, they are almost surely in it). A ``PortfolioResponse`` does
   the same (its ``quantity`` per position, currency positions by :data:`CURRENCY_FIGIS`), but
   only while the account awaits a snapshot (rule 8): otherwise it is ignored (it lags and has no
   operation time).
   Reports dated before the last portfolio snapshot's ``now`` are ignored afterwards (it holds
   them: the two streams overtake each other). A snapshot raises no verdict (cause SNAPSHOT); a
   pending fill whose deadline passed while the account awaited it is due at the snapshot.
8. **Awaiting a snapshot.** Nothing of an account is judged before its first snapshot, nor after a
   :meth:`~PositionLedger.gap` on its order or positions stream until the next snapshot: changes
   still match and move the state, but deadlines wait. After an order-stream gap the next fill of
   each order known before it is *uncertain* (its growth may hold fills the snapshot counted).
9. **Uncertain fills** (those of rules 7 and 8, and every fill arriving less than ``timeout`` after
   the account's last snapshot) match like others, in their order, and when judged at their deadline
   are written off silently (cause REBASE, no MISSING): they may be fills the snapshot already
   counted. The growth of an order after an order-stream gap may also be matched in part by a
   smaller reported change of the same sign (it may hold a new fill with the lost ones). As the
   snapshot may hold them, a run of fills matched by rule 5 may start after up to 64 uncertain
   fills at the head (so that their total cannot explain a later change by coincidence). Changes
   matched with uncertain fills may show another fill of the same total instead: the first such
   fill pending becomes uncertain, or else the first arriving before the changes' deadline. So a
   snapshot never raises an alarm, at the price of not reporting a fill missing within ``timeout``
   of a snapshot (or of a fill it makes uncertain).
10. **Events.** One :class:`~rxinvest.derived.PositionCheck` per change of a position's (status,
    expected, reported), the first state included, plus one per verdict. Events of an input carry
    its ``now``. The same inputs give the same events (ids included); a duplicated input changes
    nothing (rules 2 and 4; a snapshot repeated later re-bases again: it is a new snapshot).
    Positions due at one instant are judged in the order of their keys (account, instrument_uid,
    currency): money (``""``) before securities.
11. **Memory and cost.** One entry per position, with its reports of 16 dates (rule 4); finished
    orders (FILL, CANCELLED, REJECTED) are remembered up to ``finished_orders`` (the least recently
    finished forgotten first): a state of an order forgotten counts its lots again. The deadlines
    are one heap entry per position with anything pending, corrected lazily when looked at. An
    input costs O(1) when its position has nothing pending on its own side, else O(p) for the p
    changes pending on the position (O(u p) with u uncertain fills at the head, up to 64: mostly
    within ``timeout`` of a snapshot); a change due at its deadline O(p) for each start of a run (at
    most 9 certain, 64 in all).
"""

from __future__ import annotations

import enum
import heapq
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rxinvest.derived.positions import CheckCause, CheckStatus, PositionCheck
from rxinvest.errors import ConfigurationError
from rxinvest.fold._make import positional
from rxinvest.model.enums import OrderDirection, OrderExecutionReportStatus
from rxinvest.model.operations import (
    PortfolioResponse,
    PositionData,
    PositionsFutures,
    PositionsOptions,
    PositionsResponse,
    PositionsSecurities,
)
from rxinvest.model.orders import OrderState

__all__ = ["CURRENCY_FIGIS", "Feed", "PositionLedger"]

#: The FIGIs of currency positions in a portfolio and their currency (rule 7).
CURRENCY_FIGIS: dict[str, str] = {
    "RUB000UTSTOM": "rub",
    "USD000UTSTOM": "usd",
    "EUR_RUB__TOM": "eur",
    "CNYRUB_TOM": "cny",
    "HKDRUB_TOM": "hkd",
    "GBPRUB_TOM": "gbp",
    "CHFRUB_TOM": "chf",
    "TRYRUB_TOM": "try",
    "KZTRUB_TOM": "kzt",
    "AMDRUB_TOM": "amd",
    "BYNRUB_TOM": "byn",
}


class Feed(enum.Enum):
    """The streams a gap can be on (values: the method names, as markers name them)."""

    ORDERS = "OrderStateStream"
    POSITIONS = "PositionsStream"
    PORTFOLIO = "PortfolioStream"


_ZERO = Decimal(0)
_DECIMALS: dict[int, Decimal] = {}  # Decimal(units) of the fills seen, up to 4,096 of them (speed)
# Decimal(units) of the reported balances seen, up to 4,096 (a dict hit costs a quarter of Decimal()):
# apart from _DECIMALS, so that balances, many and rarely repeated, never crowd the fills' sizes out.
_BALANCES: dict[int, Decimal] = {}
_CACHED = 4096
_BUY = OrderDirection.ORDER_DIRECTION_BUY
_SELL = OrderDirection.ORDER_DIRECTION_SELL
_S = OrderExecutionReportStatus
_DONE, _CANCELLED = _S.EXECUTION_REPORT_STATUS_FILL, _S.EXECUTION_REPORT_STATUS_CANCELLED
_REJECTED = _S.EXECUTION_REPORT_STATUS_REJECTED
_MATCHED, _PENDING = CheckStatus.MATCHED, CheckStatus.PENDING
_FILL, _POSITION, _SNAPSHOT = CheckCause.FILL, CheckCause.POSITION, CheckCause.SNAPSHOT
_TIMEOUT, _REBASE = CheckCause.TIMEOUT, CheckCause.REBASE

_Key = tuple[str, str, str]  # (account, instrument_uid, currency)
_CHECK_FIELDS = ("account_id", "instrument_uid", "currency", "time", "expected", "reported", "difference",
                 "status", "cause", "seq")  # fmt: skip
_check = positional(PositionCheck, _CHECK_FIELDS)


# An order seen: [account, lots (the largest lots_executed seen), amount (the executed money at that
# state), trade ids seen (a set, only for states without a lot size; else None), stale (known before
# an order-stream gap, no state since: rule 8), finished (in PositionLedger._finished: rule 11)]. A
# list, not a class, as _Pending below: one is made per order on the hot path.
_Order = list[Any]
_ACCOUNT, _LOTS, _MONEY, _TRADE_IDS, _STALE, _FINISHED = 0, 1, 2, 3, 4, 5


class _Account:
    __slots__ = ("awaiting", "certain_from", "keys", "securities", "stale_before")

    def __init__(self) -> None:
        self.awaiting = True  # rule 8: no snapshot yet, or a gap since the last one
        self.certain_from: datetime | None = None  # the last snapshot + timeout (rule 9)
        self.stale_before: datetime | None = None  # the last portfolio snapshot's time (rule 7)
        self.keys: dict[_Key, _Position] = {}
        # The positions of keys (account, uid, ""), by uid: the hot paths find a security without
        # building and hashing its key.
        self.securities: dict[str, _Position] = {}


# A fill or a reported change not matched yet (rule 5): [amount (signed Decimal), deadline, uncertain,
# aside], uncertain 0 (certain), _WINDOW (rule 9), _HELD (pending at a snapshot: rule 7) or _JUMP (the
# first growth of an order after a gap); aside True once a match at a deadline passed over it (rule 6).
# A list, not a class: one is made per fill on the hot path, and a list costs a fifth of an object.
_Pending = list[Any]
_AMOUNT, _DEADLINE, _UNCERTAIN, _ASIDE = 0, 1, 2, 3
_WINDOW, _JUMP, _HELD = 1, 2, 3
_SKIP = 8  # rule 6: the most certain opposite changes a match at a deadline passes over
_REACH = 64  # rule 6: ... and the most changes, certain or not (a bound on the cost)
_SEEN = 16  # rule 4: the reports remembered per position


class _Position:
    __slots__ = ("account", "doubts", "expected", "fills", "key", "last", "queued", "reported", "reports",
                 "seen", "seq", "tolerance")  # fmt: skip

    def __init__(self, key: _Key, account: _Account, tolerance: Decimal) -> None:
        self.key = key
        self.account = account
        self.tolerance = tolerance
        self.expected = _ZERO
        self.reported: Decimal | None = None
        self.fills: list[_Pending] = []  # oldest first
        self.reports: list[_Pending] = []  # oldest first
        # Reports applied at the position's 16 newest dates, the oldest first (rule 4): per date a tuple
        # (date, message, ...), mostly of one message (a tuple, not a date and a list: half the cost).
        self.seen: list[tuple[Any, ...]] = []
        self.last: PositionCheck | None = None  # the event last emitted
        self.seq = 0
        self.queued = False
        # Totals of uncertain fills matched, and until when a fill of that total is uncertain (rule 9).
        self.doubts: list[tuple[Decimal, datetime]] = []


class PositionLedger:
    """Order states, position reports, snapshots, gaps and timer ticks of any number of accounts in;
    :class:`~rxinvest.derived.PositionCheck` events out (the rules at the top of the module).

    ``timeout`` (a positive ``timedelta``) is how long a fill or a reported change may wait for its
    counterpart. ``money_tolerance`` (a ``Decimal`` >= 0, default 0: exact, as the simulator, which
    has no commissions) is how far money may differ and still match; None leaves money out (no
    money events). ``finished_orders`` bounds the finished orders remembered (rule 11).

    One timer serves everything: set it to :attr:`next_deadline` after every call. Not
    thread-safe.
    """

    def __init__(
        self,
        timeout: timedelta,
        *,
        money_tolerance: Decimal | None = _ZERO,
        finished_orders: int = 10_000,
    ) -> None:
        if not isinstance(timeout, timedelta) or timeout <= timedelta(0):
            raise ConfigurationError(f"timeout must be a positive timedelta, not {timeout!r}")
        if money_tolerance is not None and (
            not isinstance(money_tolerance, Decimal) or not money_tolerance.is_finite() or money_tolerance < 0
        ):
            raise ConfigurationError(
                f"money_tolerance must be a Decimal >= 0 or None, not {money_tolerance!r}"
            )
        if isinstance(finished_orders, bool) or not isinstance(finished_orders, int) or finished_orders < 1:
            raise ConfigurationError(f"finished_orders must be an int >= 1, not {finished_orders!r}")
        self.timeout = timeout
        self.money_tolerance = money_tolerance
        self.finished_orders = finished_orders
        #: How many fills had trades whose units disagreed with lots x lot_size (rule 2).
        self.unit_mismatches = 0
        self._accounts: dict[str, _Account] = {}
        self._positions: dict[_Key, _Position] = {}
        self._orders: dict[str, _Order] = {}
        self._aliases: dict[str, str] = {}  # order_id -> order key
        # (order key, order_id) of the finished orders, the least recently finished first: a flag in the
        # order says whether it is here, so that this costs an append, not an ordered dict's insertion.
        self._finished: deque[tuple[str, str]] = deque()
        self._heap: list[tuple[datetime, _Key]] = []
        #: No instant before :attr:`next_deadline` (None: nothing queued), in O(1) (the heap keeps
        #: deadlines that may have moved later): a timer already set at or before it needs no look at
        #: ``next_deadline``. The heap's first deadline, kept in an attribute updated with the heap
        #: (see :meth:`_floor`): the operator reads it after every event, and a property costs more.
        #: Read-only.
        self.deadline_floor: datetime | None = None

    # --- inputs -----------------------------------------------------------------------------------

    def order_state(self, state: OrderState, now: datetime) -> list[PositionCheck]:
        """An order state received at ``now``: its new fill, if any (rules 2, 3, 5)."""
        heap = self._heap
        out = self.advance(now) if heap and heap[0][0] <= now else []
        order_id = state.order_id
        key = state.order_request_id
        aliases = self._aliases
        if key:
            if order_id and order_id not in aliases:
                aliases[order_id] = key
        else:
            key = aliases.get(order_id, order_id)
        order = self._orders.get(key)
        if order is None:
            order = self._orders[key] = [state.account_id, 0, _ZERO, None, False, False]
        lots = state.lots_executed
        before = order[_LOTS]
        if lots > before:
            direction = state.direction
            if direction is _BUY:
                sign = 1
            elif direction is _SELL:
                sign = -1
            else:
                return out
            lot_size = state.lot_size
            if lot_size > 0 and not state.trades:
                units = (lots - before) * lot_size
            else:
                units = self._units(state, order, lots - before)
            order[_LOTS] = lots
            account_id = state.account_id
            account = self._accounts.get(account_id)
            if account is None:
                account = self._accounts[account_id] = _Account()
            certain_from = account.certain_from
            uncertain = (
                _JUMP if order[_STALE] else _WINDOW if certain_from is not None and now < certain_from else 0
            )
            order[_STALE] = False
            if units:
                uid = state.instrument_uid
                position = account.securities.get(uid) or self._position(account, (account_id, uid, ""))
                units *= sign
                amount = _DECIMALS.get(units)
                if amount is None:
                    amount = Decimal(units)
                    if len(_DECIMALS) < _CACHED:
                        _DECIMALS[units] = amount
                if position.reports or position.doubts or position.tolerance:
                    self._fill(position, amount, now, uncertain, out)
                else:
                    # _fill's usual case, inline to save a call on the hot path: no doubt to spend
                    # (rule 9), no tolerance (only the key with uid "" has one), nothing reported
                    # pending, so nothing can match, and the state changed (PENDING).
                    expected = position.expected = position.expected + amount
                    position.fills.append([amount, now + self.timeout, uncertain, False])
                    if not position.queued:
                        self._arm(position)
                    reported = position.reported
                    difference = (reported if reported is not None else _ZERO) - expected
                    seq = position.seq
                    position.seq = seq + 1
                    event = position.last = _check(
                        account_id, uid, "", now, expected, reported, difference, _PENDING, _FILL, seq
                    )
                    out.append(event)
            if self.money_tolerance is not None:
                amount, currency = self._money(state, order)
                if amount and currency:
                    key3 = (account_id, "", currency)
                    position = account.keys.get(key3) or self._position(account, key3)
                    self._fill(position, -amount if sign > 0 else amount, now, uncertain, out)
        status = state.execution_report_status
        if (status is _DONE or status is _CANCELLED or status is _REJECTED) and not order[_FINISHED]:
            order[_FINISHED] = True
            finished = self._finished
            finished.append((key, order_id))
            if len(finished) > self.finished_orders:
                self._forget_finished()
        return out

    def positions(self, snapshot: PositionsResponse | PositionData, now: datetime) -> list[PositionCheck]:
        """A PositionsStream message received at ``now``: a ``PositionsResponse`` snapshot (rule 7)
        or a ``PositionData`` report of the positions one operation changed (rules 4, 5)."""
        heap = self._heap
        out = self.advance(now) if heap and heap[0][0] <= now else []
        account_id = snapshot.account_id
        # (A report is the usual case: its exact type is the cheapest test.)
        if type(snapshot) is not PositionData and isinstance(snapshot, PositionsResponse):
            values: dict[_Key, Decimal] = {}
            held: list[tuple[str, int]] = [
                (s.instrument_uid, s.balance + s.blocked) for s in snapshot.securities
            ]
            held += [(f.instrument_uid, f.balance + f.blocked) for f in snapshot.futures]
            held += [(o.instrument_uid, o.balance + o.blocked) for o in snapshot.options]
            for uid, units in held:
                values[(account_id, uid, "")] = values.get((account_id, uid, ""), _ZERO) + units
            if self.money_tolerance is not None:
                for cash in (*snapshot.money, *snapshot.blocked):
                    key = (account_id, "", cash.currency)
                    values[key] = values.get(key, _ZERO) + cash.amount
            return out + self._rebase(account_id, values, now, None)
        account = self._accounts.get(account_id)
        if account is None:
            account = self._accounts[account_id] = _Account()
        date = snapshot.date
        stale_before = account.stale_before
        if stale_before is not None and date is not None and date < stale_before:
            return out  # rule 7: a portfolio snapshot taken since holds it
        listed: tuple[PositionsSecurities | PositionsFutures | PositionsOptions, ...] = snapshot.securities
        if snapshot.futures or snapshot.options:  # rare: one loop costs less than three
            listed = listed + snapshot.futures + snapshot.options
        securities = account.securities
        for sec in listed:
            uid = sec.instrument_uid
            position = securities.get(uid) or self._position(account, (account_id, uid, ""))
            units = sec.balance + sec.blocked
            value = _BALANCES.get(units)
            if value is None:
                value = Decimal(units)
                if len(_BALANCES) < _CACHED:
                    _BALANCES[units] = value
            self._report(position, value, snapshot, date, now, out)
        if self.money_tolerance is not None:
            for money in snapshot.money:
                available, blocked = money.available_value, money.blocked_value
                named = available or blocked
                if named is None:
                    continue
                currency = named.currency
                value = (available.amount if available else _ZERO) + (blocked.amount if blocked else _ZERO)
                key = (account_id, "", currency)
                position = account.keys.get(key) or self._position(account, key)
                self._report(position, value, snapshot, date, now, out)
        return out

    def portfolio(self, snapshot: PortfolioResponse, now: datetime) -> list[PositionCheck]:
        """A PortfolioStream snapshot received at ``now``: a base while the account awaits one,
        otherwise ignored (rule 7)."""
        heap = self._heap
        out = self.advance(now) if heap and heap[0][0] <= now else []
        account_id = snapshot.account_id
        account = self._accounts.get(account_id)
        if account is not None and not account.awaiting:
            return out
        values: dict[_Key, Decimal] = {}
        unknown: list[_Key] = []
        for position in snapshot.positions:
            quantity = position.quantity if position.quantity is not None else _ZERO
            if position.instrument_type == "currency":
                currency = CURRENCY_FIGIS.get(position.figi)
                if currency is None or self.money_tolerance is None:
                    continue
                key = (account_id, "", currency)
            else:
                key = (account_id, position.instrument_uid, "")
            values[key] = values.get(key, _ZERO) + quantity
        if account is not None:  # money of currencies the portfolio cannot name: keep what is reported
            unknown = [key for key in account.keys if not key[1] and key not in values]
        out += self._rebase(account_id, values, now, unknown)
        self._accounts[account_id].stale_before = now
        return out

    def gap(self, stream: Feed | str, account_id: str, now: datetime) -> list[PositionCheck]:
        """Events of ``stream`` (a :class:`Feed` or its value) for ``account_id`` (``""``: every
        account known) may have been lost up to ``now``: the account awaits a snapshot (rule 8)."""
        try:
            feed = Feed(stream)
        except ValueError:
            raise ConfigurationError(f"unknown stream {stream!r}; one of {[f.value for f in Feed]}") from None
        out = self.advance(now)
        if feed is Feed.PORTFOLIO:
            return out  # portfolios are only bases: nothing of theirs was relied on
        ids = [account_id] if account_id else list(self._accounts)
        for name in ids:
            account = self._accounts.get(name)
            if account is None:
                account = self._accounts[name] = _Account()
            account.awaiting = True
        if feed is Feed.ORDERS:
            targets = set(ids)
            for order in self._orders.values():
                if order[_ACCOUNT] in targets:
                    order[_STALE] = True
        return out

    def advance(self, now: datetime) -> list[PositionCheck]:
        """The scheduler says ``now``: judge every pending change due (rules 6, 9), in the order of
        their deadlines."""
        out: list[PositionCheck] = []
        while (deadline := self._top()) is not None and deadline <= now:
            _, key = heapq.heappop(self._heap)
            self._floor()
            position = self._positions[key]
            position.queued = False
            out += self._judge(position, deadline)
            self._arm(position)
        return out

    # --- outputs ----------------------------------------------------------------------------------

    @property
    def next_deadline(self) -> datetime | None:
        """The earliest instant at which :meth:`advance` has a verdict or a write-off to make, or
        None."""
        return self._top()

    def current(self, account_id: str, instrument_uid: str = "", currency: str = "") -> PositionCheck | None:
        """The last event of a position (a security by ``instrument_uid``, money by ``currency``)."""
        position = self._positions.get((account_id, instrument_uid, currency.lower()))
        return None if position is None else position.last

    def keys(self) -> list[tuple[str, str, str]]:
        """The positions known: (account_id, instrument_uid, currency), in the order first seen."""
        return list(self._positions)

    # --- internals --------------------------------------------------------------------------------

    def _units(self, state: OrderState, order: _Order, lots: int) -> int:
        """Units of ``lots`` new lots of a state with trades, or without a lot size (rule 2)."""
        lot_size = state.lot_size
        if lot_size > 0:
            units = lots * lot_size
            quantity = sum(trade.quantity for trade in state.trades)
            # The trades may list every fill so far (the simulator) or this state's only.
            if quantity != state.lots_executed * lot_size and quantity != units:
                self.unit_mismatches += 1
            return units
        seen = order[_TRADE_IDS]
        if seen is None:
            seen = order[_TRADE_IDS] = set()
        quantity = 0
        for trade in state.trades:
            if trade.trade_id not in seen:
                seen.add(trade.trade_id)
                quantity += trade.quantity
        return quantity

    def _money(self, state: OrderState, order: _Order) -> tuple[Decimal, str]:
        """The money of the new fill (its absolute value) and its currency (rule 3)."""
        executed = state.executed_order_price
        if executed is not None:
            amount = executed.amount - order[_MONEY]
            order[_MONEY] = executed.amount
            return amount, executed.currency or state.currency.lower()
        total = _ZERO
        for trade in state.trades:
            if trade.price is not None:
                total += trade.price * trade.quantity
        amount = total - order[_MONEY]
        order[_MONEY] = total
        return amount, state.currency.lower()

    def _forget_finished(self) -> None:
        """Rule 11: forget the least recently finished orders beyond ``finished_orders``."""
        finished = self._finished
        while len(finished) > self.finished_orders:
            old, old_id = finished.popleft()
            self._orders.pop(old, None)
            if self._aliases.get(old_id) == old:
                del self._aliases[old_id]

    def _position(self, account: _Account, key: _Key) -> _Position:
        position = self._positions.get(key)
        if position is None:
            tolerance = self.money_tolerance if not key[1] and self.money_tolerance is not None else _ZERO
            position = self._positions[key] = account.keys[key] = _Position(key, account, tolerance)
            if not key[2]:
                account.securities[key[1]] = position
            if account.certain_from is not None:  # after a snapshot, a position it did not list is 0
                position.reported = _ZERO
        return position

    def _fill(
        self, position: _Position, amount: Decimal, now: datetime, uncertain: int, out: list[PositionCheck]
    ) -> None:
        """A fill of ``amount`` (signed) on ``position`` (rules 5, 9); its event, if any, onto ``out``."""
        position.expected += amount
        fills, reports = position.fills, position.reports
        tolerance = position.tolerance
        if position.doubts and not uncertain:
            uncertain = self._doubted(position, amount, now)
        # Within the tolerance of nothing (``tolerance`` first: 0 for securities, whose fills are not 0).
        if tolerance and not fills and not reports and abs(amount) <= tolerance:
            position.expected -= amount
            self._emit(position, now, _FILL, out)
            return
        item: _Pending = [amount, now + self.timeout, uncertain, False]
        fills.append(item)
        if not reports:  # nothing can match: ``expected`` moved, the state changed
            if not position.queued:
                self._arm(position)
            self._emit(position, now, _FILL, out, True)
            return
        if not self._arrived(position, fills, reports) and uncertain == _JUMP:
            # Rule 9: smaller reported changes of the same sign are part of the growth after a gap.
            index = 0
            while index < len(reports):
                part: Decimal = reports[index][_AMOUNT]
                whole: Decimal = item[_AMOUNT]
                if not reports[index][_ASIDE] and abs(part) < abs(whole) and (part > 0) == (whole > 0):
                    item[_AMOUNT] = whole - part
                    del reports[index]
                else:
                    index += 1
            self._settle(position)
        if not position.queued:
            self._arm(position)
        self._emit(position, now, _FILL, out)

    @staticmethod
    def _doubted(position: _Position, amount: Decimal, now: datetime) -> int:
        """Rule 9: whether a fill of ``amount`` arriving at ``now`` may be one that changes matched with
        uncertain fills showed (then that doubt is spent)."""
        doubts = position.doubts = [doubt for doubt in position.doubts if doubt[1] >= now]
        for index, (total, _) in enumerate(doubts):
            if abs(total - amount) <= position.tolerance:
                del doubts[index]
                return _WINDOW
        return 0

    def _report(
        self,
        position: _Position,
        value: Decimal,
        message: PositionData,
        date: datetime | None,
        now: datetime,
        out: list[PositionCheck],
    ) -> None:
        """A reported absolute ``value`` of ``position``, from ``message`` (rules 4, 5, 9); its event, if
        any, onto ``out``."""
        if date is not None:  # rule 4: the message is compared, not the value
            seen = position.seen
            if not seen or date > seen[-1][0]:  # the usual case: a new date (no hashing, no search)
                seen.append((date, message))
            else:
                dates = [entry[0] for entry in seen]
                index = bisect_left(dates, date)
                if index < len(seen) and dates[index] == date:
                    same = seen[index]
                    if message in same[1:]:
                        return
                    seen[index] = (*same, message)
                elif index == 0 and len(seen) >= _SEEN:  # before all remembered: a repeat forgotten
                    return
                else:
                    seen.insert(index, (date, message))
            if len(seen) > _SEEN:
                del seen[0]
        old = position.reported
        change = value - old if old is not None else value
        position.reported = value
        if not change:
            self._emit(position, now, _POSITION, out)
            return
        fills, reports = position.fills, position.reports
        if not reports:
            if not fills:
                if abs(change) <= position.tolerance:  # within the tolerance of nothing
                    position.expected += change
                    self._emit(position, now, _POSITION, out)
                    return
            elif (
                len(fills) == 1
                and fills[0][_AMOUNT] == change
                and not fills[0][_UNCERTAIN]
                and not fills[0][_ASIDE]
            ):
                # The usual case, rule 5 at its simplest: the change of the one fill pending.
                fills.clear()
                # _emit(changed=True) inline, as the hot path of order_state: ``reported`` moved, and
                # nothing is pending (MATCHED).
                account_id, uid, currency = position.key
                expected = position.expected
                difference = value - expected
                seq = position.seq
                position.seq = seq + 1
                event = position.last = _check(
                    account_id, uid, currency, now, expected, value, difference, _MATCHED, _POSITION, seq
                )
                out.append(event)
                return
        item: _Pending = [change, now + self.timeout, 0, False]
        reports.append(item)
        if fills and not self._arrived(position, reports, fills):
            for fill in fills:  # rule 9: part of the growth of an order after a gap
                amount = fill[_AMOUNT]
                if (
                    fill[_UNCERTAIN] == _JUMP
                    and not fill[_ASIDE]
                    and abs(change) < abs(amount)
                    and (change > 0) == (amount > 0)
                ):
                    fill[_AMOUNT] = amount - change
                    reports.remove(item)
                    self._settle(position)
                    break
        if not position.queued:
            self._arm(position)
        self._emit(position, now, _POSITION, out)

    def _arrived(self, position: _Position, own: list[_Pending], other: list[_Pending]) -> bool:
        """Rule 5 for the change just appended to ``own``: True if anything matched."""
        tolerance = position.tolerance
        last = own[-1]
        if len(own) == 1:  # the usual case: the only one of its side, to match with a prefix of the other
            # A run of fills may also start after uncertain ones at the head (see _settle).
            if own is position.reports and other[0][_UNCERTAIN]:
                return self._settle(position)
            amount, total = last[_AMOUNT], _ZERO
            for count, item in enumerate(other, 1):
                if item[_ASIDE]:
                    return self._settle(position)
                total += item[_AMOUNT]
                if abs(total - amount) <= tolerance:
                    if own is position.fills:
                        if last[_UNCERTAIN]:
                            self._doubt(position, [last], other[:count])
                    elif any(item[_UNCERTAIN] for item in other[:count]):
                        self._doubt(position, other[:count], own)
                    own.clear()
                    del other[:count]
                    position.expected += (total - amount) if own is position.fills else (amount - total)
                    return True
            return False
        return self._settle(position)

    def _settle(self, position: _Position) -> bool:
        """Rule 5: while a prefix of the pending fills and one of the pending reported changes (those not
        set aside, each in arrival order, one of each at least) agree in sum, match them: the shortest
        prefix of fills, with the shortest prefix of changes for it. True if anything matched."""
        tolerance = position.tolerance
        matched = False
        while True:
            fills = [item for item in position.fills if not item[_ASIDE]]
            reports = [item for item in position.reports if not item[_ASIDE]]
            if not fills or not reports:
                return matched
            find = _finder(_sums(reports), tolerance)
            # Uncertain fills at the head may be held by the snapshot already (rule 9): a run may
            # start after them, so that their total cannot match a later report by coincidence.
            lead = 0
            while lead < len(fills) and lead < _REACH and fills[lead][_UNCERTAIN]:
                lead += 1
            runs: list[tuple[int, int, int]] = []  # (fills, start, reports): the first match of each start
            for start in range(lead + 1):
                total = _ZERO
                for count in range(1, len(fills) - start + 1):
                    total += fills[start + count - 1][_AMOUNT]
                    found = find(total)
                    if found is not None:
                        runs.append((count, start, found))
                        break
            if not runs:
                return matched
            count, start, found = min(runs)
            self._take(position, fills[start : start + count], reports[:found])
            matched = True

    def _explain(self, position: _Position, own: list[_Pending], other: list[_Pending]) -> bool:
        """Rule 6: the change at the head of ``own`` is due. Unless the others agree by prefixes
        without it, match it, with the changes after it on its side, with a run of the other side
        (for fills, possibly none: they cancel out, unless a run of the other side could explain one
        of the others), passing over at most ``_SKIP`` changes at the front of the other side, which
        are set aside, but none that a run of the changes after it on its side could explain (then it
        is the stray one), and in no bundle of which one change has a counterpart of its own among
        those left out. True if it matched."""
        tolerance = position.tolerance
        group = [item for item in own if not item[_ASIDE]]
        rest = [item for item in other if not item[_ASIDE]]
        if rest and len(group) > 1:  # the others agree without it: it is the stray one
            find = _finder(_sums(rest), tolerance)
            if any(find(total) is not None for total in _sums(group[1:])):
                return False
        find = _finder(_sums(group), tolerance)
        found: list[tuple[int, int, int]] = []  # (changes of own, of other passed over, end of the run)
        count = find(_ZERO) if own is position.fills else None
        if count is not None and not self._explicable(group[1:count], rest, tolerance):
            found.append((count, 0, 0))  # fills that cancel out
        for start in _starts(rest):
            best: tuple[int, int, int] | None = None
            total = _ZERO
            for end in range(start, len(rest)):
                total += rest[end][_AMOUNT]
                count = find(total)
                if count is not None and (best is None or count < best[0]):
                    best = (count, start, end + 1)
            if best is not None:
                found.append(best)
        for count, start, end in sorted(found):
            if start and self._explicable(rest[:start], group[1:], tolerance):
                continue
            # Nor a bundle on either side whose members have counterparts of their own.
            if count > 1 and end and self._explicable(group[1:count], rest[:start] + rest[end:], tolerance):
                continue
            if end - start > 1 and self._explicable(rest[start:end], group[count:], tolerance):
                continue
            for item in rest[:start]:
                item[_ASIDE] = True
            if own is position.fills:
                self._take(position, group[:count], rest[start:end])
            else:
                self._take(position, rest[start:end], group[:count])
            self._settle(position)
            return True
        return False

    @staticmethod
    def _explicable(items: list[_Pending], others: list[_Pending], tolerance: Decimal) -> bool:
        """Whether any of ``items`` is within ``tolerance`` of the sum of a run of at most
        ``_SKIP + 1`` of ``others``."""
        if not items:
            return False
        find = _finder([item[_AMOUNT] for item in items], tolerance)
        for start in range(len(others)):
            total = _ZERO
            for item in others[start : start + _SKIP + 1]:
                total += item[_AMOUNT]
                if find(total) is not None:
                    return True
        return False

    @staticmethod
    def _doubt(position: _Position, fills: list[_Pending], reports: list[_Pending]) -> None:
        """Rule 9: ``reports`` matched with ``fills``, uncertain ones among them, may show another fill
        of the same total instead: one pending becomes uncertain, or else one arriving before their
        deadline will be."""
        if not reports:
            return
        total = sum((item[_AMOUNT] for item in fills), _ZERO)
        for item in position.fills:
            if (
                not item[_UNCERTAIN]
                and abs(item[_AMOUNT] - total) <= position.tolerance
                and all(item is not taken for taken in fills)
            ):
                item[_UNCERTAIN] = _WINDOW
                return
        doubts = position.doubts
        doubts.append((total, max(item[_DEADLINE] for item in reports)))
        if len(doubts) > _SKIP:
            del doubts[0]

    def _take(self, position: _Position, fills: list[_Pending], reports: list[_Pending]) -> None:
        """Match ``fills`` with ``reports``: neither is pending any more, and ``expected`` follows so that
        ``reported - expected`` stays (reported changes - fills) pending (rule 5)."""
        if any(item[_UNCERTAIN] for item in fills):
            self._doubt(position, fills, reports)
        taken = {id(item) for item in fills}
        position.fills[:] = [item for item in position.fills if id(item) not in taken]
        taken = {id(item) for item in reports}
        position.reports[:] = [item for item in position.reports if id(item) not in taken]
        position.expected += sum((item[_AMOUNT] for item in reports), _ZERO) - sum(
            (item[_AMOUNT] for item in fills), _ZERO
        )

    def _rebase(
        self, account_id: str, values: dict[_Key, Decimal], now: datetime, keep: Iterable[_Key] | None
    ) -> list[PositionCheck]:
        """A snapshot of the account (rule 7): ``keep`` lists positions re-based on their own
        reported value."""
        account = self._accounts.get(account_id)
        if account is None:
            account = self._accounts[account_id] = _Account()
        account.awaiting = False
        account.certain_from = now + self.timeout
        kept = set(keep or ())
        out: list[PositionCheck] = []
        for key in [*account.keys, *(key for key in values if key not in account.keys)]:
            value = values.get(key, _ZERO)
            position = account.keys.get(key)
            if position is None:
                if not value:
                    continue
                position = self._position(account, key)
            if key in kept:
                value = position.reported if position.reported is not None else _ZERO
            position.reported = value
            position.reports.clear()
            pending = _ZERO
            for item in position.fills:
                item[_ASIDE] = False
                item[_UNCERTAIN] = _HELD
                if item[_DEADLINE] < now:  # it waited while the account awaited this snapshot
                    item[_DEADLINE] = now
                pending += item[_AMOUNT]
            position.expected = value + pending
            self._arm(position)
            self._emit(position, now, _SNAPSHOT, out)
        return out

    def _judge(self, position: _Position, deadline: datetime) -> list[PositionCheck]:
        """The changes of ``position`` due at ``deadline``, fills first: each is matched if anything
        explains it, else judged (rules 6, 9)."""
        out: list[PositionCheck] = []
        while True:
            fills, reports = position.fills, position.reports
            if fills and fills[0][_DEADLINE] == deadline:
                own, other = fills, reports
            elif reports and reports[0][_DEADLINE] == deadline:
                own, other = reports, fills
            else:
                break
            head = own[0]
            # A fill pending at a snapshot is almost surely held by it: written off, not matched
            # further on, where it would take a change that shows a fill still to come (rule 7).
            if not head[_ASIDE] and head[_UNCERTAIN] != _HELD and self._explain(position, own, other):
                continue
            item = own.pop(0)
            if own is fills:
                if not item[_UNCERTAIN]:
                    out.append(self._event(position, deadline, CheckStatus.MISSING, _TIMEOUT, -item[_AMOUNT]))
                position.expected -= item[_AMOUNT]
            else:
                out.append(self._event(position, deadline, CheckStatus.UNEXPLAINED, _TIMEOUT, item[_AMOUNT]))
                position.expected += item[_AMOUNT]
            self._settle(position)
        self._emit(position, deadline, _REBASE, out)
        return out

    def _event(
        self, position: _Position, time: datetime, status: CheckStatus, cause: CheckCause, difference: Decimal
    ) -> PositionCheck:
        account_id, uid, currency = position.key
        event = position.last = _check(
            account_id,
            uid,
            currency,
            time,
            position.expected,
            position.reported,
            difference,
            status,
            cause,
            position.seq,
        )
        position.seq += 1
        return event

    @staticmethod
    def _emit(
        position: _Position,
        time: datetime,
        cause: CheckCause,
        out: list[PositionCheck],
        changed: bool = False,
    ) -> None:
        """An event onto ``out`` if the position's state differs from the one last emitted (rule 10);
        ``changed``: the caller knows it does."""
        status = _PENDING if position.fills or position.reports else _MATCHED
        expected, reported = position.expected, position.reported
        last = position.last
        if (
            not changed
            and last is not None
            and last.status is status
            and last.expected == expected
            and last.reported == reported
        ):
            return
        account_id, uid, currency = position.key
        difference = (reported if reported is not None else _ZERO) - expected
        seq = position.seq
        position.seq = seq + 1
        event = position.last = _check(
            account_id, uid, currency, time, expected, reported, difference, status, cause, seq
        )
        out.append(event)

    def _arm(self, position: _Position) -> None:
        """Keep the heap's invariant: a position with anything pending has a (possibly early) entry."""
        if not position.queued and (position.fills or position.reports) and not position.account.awaiting:
            heapq.heappush(self._heap, (self._deadline(position), position.key))
            self._floor()
            position.queued = True

    @staticmethod
    def _deadline(position: _Position) -> datetime:
        fills, reports = position.fills, position.reports
        deadline: datetime
        if fills and reports:
            deadline = min(fills[0][_DEADLINE], reports[0][_DEADLINE])
        else:
            deadline = (fills or reports)[0][_DEADLINE]
        return deadline

    def _top(self) -> datetime | None:
        heap, positions = self._heap, self._positions
        while heap:
            deadline, key = heap[0]
            position = positions[key]
            if not (position.fills or position.reports) or position.account.awaiting:
                heapq.heappop(heap)
                self._floor()
                position.queued = False
                continue
            actual = self._deadline(position)
            if actual == deadline:
                return deadline
            heapq.heapreplace(heap, (actual, key))
            self._floor()
        return None

    def _floor(self) -> None:
        """Keep :attr:`deadline_floor` the heap's first deadline: call after every change of the heap."""
        heap = self._heap
        self.deadline_floor = heap[0][0] if heap else None


def _starts(items: list[_Pending]) -> list[int]:
    """Where a run may start after passing over the items before it (rule 6): at most ``_SKIP``
    certain ones; uncertain ones (fills a snapshot may hold) do not count, up to ``_REACH`` items."""
    out: list[int] = []
    certain = 0
    for index, item in enumerate(items[:_REACH]):
        out.append(index)
        if not item[_UNCERTAIN]:
            certain += 1
            if certain > _SKIP:
                break
    return out


def _sums(items: list[_Pending]) -> list[Decimal]:
    """The running totals of the amounts of ``items``."""
    out: list[Decimal] = []
    total = _ZERO
    for item in items:
        total += item[_AMOUNT]
        out.append(total)
    return out


def _finder(sums: list[Decimal], tolerance: Decimal) -> Callable[[Decimal], int | None]:
    """A function of an amount: the least ``count`` whose ``sums[count - 1]`` is within
    ``tolerance`` of it, else None."""
    if not tolerance:
        first: dict[Decimal, int] = {}
        for count, total in enumerate(sums, 1):
            first.setdefault(total, count)
        return first.get
    ordered = sorted(zip(sums, range(1, len(sums) + 1), strict=True))
    keys = [total for total, _ in ordered]

    def find(amount: Decimal) -> int | None:
        low, high = bisect_left(keys, amount - tolerance), bisect_right(keys, amount + tolerance)
        return min((count for _, count in ordered[low:high]), default=None)

    return find
