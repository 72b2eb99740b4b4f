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
   A report dated before the last applied one of that position is stale and ignored, and so is
   one with the same date and a value already applied at that date (a duplicate).
5. **Matching.** Each fill and each reported change not yet matched is *pending* from its arrival
   (``now``). A new one is matched with one opposite pending one of the same amount (money: within
   the tolerance), the oldest (for a report: the oldest certain fill first), else with the oldest
   two or more opposite ones together if their sum is that amount (one report of several fills).
   Nothing else is netted: two reported changes that cancel out are two unexplained changes. A
   money change within the tolerance with nothing pending is matched at once. ``expected`` follows
   so that ``reported - expected`` is always (reported changes - fills) pending: MATCHED (nothing
   pending) means ``expected == reported``. A position with anything pending is PENDING.
6. **Timeout** (:meth:`PositionLedger.advance`, :attr:`PositionLedger.next_deadline`). A pending
   change ``timeout`` old (exactly ``timeout`` counts) gets a verdict, stamped with that instant: a
   fill is MISSING, a reported change UNEXPLAINED (cause TIMEOUT; ``difference`` is the amount
   judged). Each is judged once: then ``expected`` is corrected by it (the positions stream is
   taken as the truth), and the position's new state follows (cause REBASE). Every input first
   runs :meth:`~PositionLedger.advance` to its ``now``, so verdicts never come after later events,
   whenever the timer fires.
7. **Snapshots.** A ``PositionsResponse`` re-bases every position of its account: ``reported`` =
   the snapshot's (0 for a known position it does not list), pending reported changes are dropped,
   pending fills stay but become *uncertain* (the snapshot may or may not hold them), and
   ``expected`` = ``reported`` + those fills. A ``PortfolioResponse`` does the same (its
   ``quantity`` per position, currency positions by :data:`CURRENCY_FIGIS`), but only while the
   account awaits a snapshot (rule 8): otherwise it is ignored (it lags and has no operation time).
   Reports dated before the last portfolio snapshot's ``now`` are ignored afterwards (it holds
   them: the two streams overtake each other). A snapshot raises no verdict (cause SNAPSHOT); a
   pending fill whose deadline passed while the account awaited it is due at the snapshot.
8. **Awaiting a snapshot.** Nothing of an account is judged before its first snapshot, nor after a
   :meth:`~PositionLedger.gap` on its order or positions stream until the next snapshot: changes
   still match and move the state, but deadlines wait. After an order-stream gap the next fill of
   each order known before it is *uncertain* (its growth may hold fills the snapshot counted).
9. **Uncertain fills** (those of rules 7 and 8, and every fill arriving less than ``timeout`` after
   the account's last snapshot) match like others (after the certain ones) and at their deadline
   are written off silently (cause REBASE, no MISSING): they may be fills the snapshot already
   counted. The growth of an order after an order-stream gap may also be matched in part by a
   smaller reported change of the same sign (it may hold a new fill with the lost ones). So a
   snapshot never raises an alarm, at the price of not reporting a fill missing within
   ``timeout`` of a snapshot.
10. **Events.** One :class:`~rxinvest.derived.PositionCheck` per change of a position's (status,
    expected, reported), the first state included, plus one per verdict. Events of an input carry
    its ``now``. The same inputs give the same events (ids included); a duplicated input changes
    nothing (rules 2 and 4; a snapshot repeated later re-bases again: it is a new snapshot).
    Positions due at one instant are judged in the order of their keys (account, instrument_uid,
    currency): money (``""``) before securities.
11. **Memory.** One entry per position; finished orders (FILL, CANCELLED, REJECTED) are remembered
    up to ``finished_orders`` (the least recently finished forgotten first): a state of an order
    forgotten counts its lots again. The deadlines are one heap entry per position with anything
    pending, corrected lazily when looked at.
"""

from __future__ import annotations

import enum
import heapq
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rxinvest.derived.positions import CheckCause, CheckStatus, PositionCheck
from rxinvest.errors import ConfigurationError
from rxinvest.fold._make import positional
from rxinvest.model.enums import OrderDirection, OrderExecutionReportStatus
from rxinvest.model.operations import PortfolioResponse, PositionData, PositionsResponse
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


class _Order:
    __slots__ = ("account", "amount", "lots", "stale", "trade_ids")

    def __init__(self, account: str) -> None:
        self.account = account
        self.lots = 0  # the largest lots_executed seen
        self.amount = _ZERO  # the executed money at that state
        self.trade_ids: set[str] | None = None  # trade ids seen (only for states without a lot size)
        self.stale = False  # known before an order-stream gap, no state since (rule 8)


class _Account:
    __slots__ = ("awaiting", "certain_from", "keys", "stale_before")

    def __init__(self) -> None:
        self.awaiting = True  # rule 8: no snapshot yet, or a gap since the last one
        self.certain_from: datetime | None = None  # the last snapshot + timeout (rule 9)
        self.stale_before: datetime | None = None  # the last portfolio snapshot's time (rule 7)
        self.keys: dict[_Key, _Position] = {}


# A fill or a reported change not matched yet (rule 5): [amount (signed Decimal), deadline, uncertain],
# uncertain 0 (certain), _WINDOW (rules 7, 9) or _JUMP (the first growth of an order after a gap).
# A list, not a class: one is made per fill on the hot path, and a list costs a fifth of an object.
_Pending = list[Any]
_AMOUNT, _DEADLINE, _UNCERTAIN = 0, 1, 2
_WINDOW, _JUMP = 1, 2


class _Position:
    __slots__ = ("account", "date", "expected", "fills", "key", "last", "queued", "reported", "reports",
                 "seen", "seq", "tolerance")  # fmt: skip

    def __init__(self, key: _Key, account: _Account, tolerance: Decimal) -> None:
        self.key = key
        self.account = account
        self.tolerance = tolerance
        self.expected = _ZERO
        self.reported: Decimal | None = None
        self.fills: list[_Pending] = []  # oldest first
        self.reports: list[_Pending] = []  # oldest first
        self.date: datetime | None = None  # the date of the last report applied (rule 4)
        self.seen: list[Decimal] = []  # the values applied at that date
        self.last: PositionCheck | None = None  # the event last emitted
        self.seq = 0
        self.queued = False


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
        self._finished: OrderedDict[str, str] = OrderedDict()  # order key -> order_id
        self._heap: list[tuple[datetime, _Key]] = []

    # --- inputs -----------------------------------------------------------------------------------

    def order_state(self, state: OrderState, now: datetime) -> list[PositionCheck]:
        """An order state received at ``now``: its new fill, if any (rules 2, 3, 5)."""
        heap = self._heap
        out = self.advance(now) if heap and heap[0][0] <= now else []
        order_id = state.order_id
        key = state.order_request_id
        if key:
            if order_id and order_id not in self._aliases:
                self._aliases[order_id] = key
        else:
            key = self._aliases.get(order_id, order_id)
        order = self._orders.get(key)
        if order is None:
            order = self._orders[key] = _Order(state.account_id)
        lots = state.lots_executed
        if lots > order.lots:
            direction = state.direction
            if direction is _BUY:
                sign = 1
            elif direction is _SELL:
                sign = -1
            else:
                return out
            lot_size = state.lot_size
            if lot_size > 0 and not state.trades:
                units = (lots - order.lots) * lot_size
            else:
                units = self._units(state, order, lots - order.lots)
            order.lots = lots
            account = self._accounts.get(state.account_id)
            if account is None:
                account = self._accounts[state.account_id] = _Account()
            certain_from = account.certain_from
            uncertain = (
                _JUMP if order.stale else _WINDOW if certain_from is not None and now < certain_from else 0
            )
            order.stale = False
            if units:
                key3 = (state.account_id, state.instrument_uid, "")
                out += self._fill(account, key3, Decimal(sign * units), now, uncertain)
            if self.money_tolerance is not None:
                amount, currency = self._money(state, order)
                if amount and currency:
                    key3 = (state.account_id, "", currency)
                    out += self._fill(account, key3, -amount if sign > 0 else amount, now, uncertain)
        status = state.execution_report_status
        if (status is _DONE or status is _CANCELLED or status is _REJECTED) and key not in self._finished:
            self._finish(key, order_id)
        return out

    def positions(self, snapshot: PositionsResponse | PositionData, now: datetime) -> list[PositionCheck]:
        """A PositionsStream message received at ``now``: a ``PositionsResponse`` snapshot (rule 7)
        or a ``PositionData`` report of the positions one operation changed (rules 4, 5)."""
        heap = self._heap
        out = self.advance(now) if heap and heap[0][0] <= now else []
        account_id = snapshot.account_id
        if isinstance(snapshot, PositionsResponse):
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
        for security in snapshot.securities:
            value = Decimal(security.balance + security.blocked)
            out += self._report(account, (account_id, security.instrument_uid, ""), value, date, now)
        for future in snapshot.futures:
            value = Decimal(future.balance + future.blocked)
            out += self._report(account, (account_id, future.instrument_uid, ""), value, date, now)
        for option in snapshot.options:
            value = Decimal(option.balance + option.blocked)
            out += self._report(account, (account_id, option.instrument_uid, ""), value, date, now)
        if self.money_tolerance is not None:
            for money in snapshot.money:
                available, blocked = money.available_value, money.blocked_value
                named = available or blocked
                if named is None:
                    continue
                currency = named.currency
                value = (available.amount if available else _ZERO) + (blocked.amount if blocked else _ZERO)
                out += self._report(account, (account_id, "", currency), value, date, now)
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
                if order.account in targets:
                    order.stale = True
        return out

    def advance(self, now: datetime) -> list[PositionCheck]:
        """The scheduler says ``now``: judge every pending change due (rules 6, 9), in the order of
        their deadlines."""
        out: list[PositionCheck] = []
        while (deadline := self._top()) is not None and deadline <= now:
            _, key = heapq.heappop(self._heap)
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
        seen = order.trade_ids
        if seen is None:
            seen = order.trade_ids = set()
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
            amount = executed.amount - order.amount
            order.amount = executed.amount
            return amount, executed.currency or state.currency.lower()
        total = _ZERO
        for trade in state.trades:
            if trade.price is not None:
                total += trade.price * trade.quantity
        amount = total - order.amount
        order.amount = total
        return amount, state.currency.lower()

    def _finish(self, key: str, order_id: str) -> None:
        finished = self._finished
        finished[key] = order_id
        while len(finished) > self.finished_orders:
            old, old_id = finished.popitem(last=False)
            self._orders.pop(old, None)
            if self._aliases.get(old_id) == old:
                del self._aliases[old_id]

    def _position(self, account: _Account, key: _Key) -> _Position:
        position = self._positions.get(key)
        if position is None:
            tolerance = self.money_tolerance if not key[1] and self.money_tolerance is not None else _ZERO
            position = self._positions[key] = account.keys[key] = _Position(key, account, tolerance)
            if account.certain_from is not None:  # after a snapshot, a position it did not list is 0
                position.reported = _ZERO
        return position

    def _fill(
        self, account: _Account, key: _Key, amount: Decimal, now: datetime, uncertain: int
    ) -> list[PositionCheck]:
        """A fill of ``amount`` (signed) on a position (rules 5, 9)."""
        position = self._positions.get(key) or self._position(account, key)
        position.expected += amount
        tolerance = position.tolerance
        reports = position.reports
        if reports:
            for index, item in enumerate(reports):  # rule 5: the oldest reported change of that amount
                if abs(item[_AMOUNT] - amount) <= tolerance:
                    del reports[index]
                    position.expected += item[_AMOUNT] - amount
                    return self._emit(position, now, _FILL)
            if self._prefix(position, reports, amount):
                return self._emit(position, now, _FILL)
            if uncertain == _JUMP:  # rule 9: smaller reported changes of the same sign are part of it
                index = 0
                while index < len(reports):
                    part = reports[index][_AMOUNT]
                    if abs(part) < abs(amount) and (part > 0) == (amount > 0):
                        amount -= part
                        del reports[index]
                    else:
                        index += 1
        elif not position.fills and abs(amount) <= tolerance:  # money within the tolerance of nothing
            position.expected -= amount
            return self._emit(position, now, _FILL)
        position.fills.append([amount, now + self.timeout, uncertain])
        if not position.queued:
            self._arm(position)
        return self._emit(position, now, _FILL)

    def _report(
        self, account: _Account, key: _Key, value: Decimal, date: datetime | None, now: datetime
    ) -> list[PositionCheck]:
        """A reported absolute ``value`` of a position (rules 4, 5, 9)."""
        position = self._positions.get(key) or self._position(account, key)
        if date is not None:
            last = position.date
            if last is not None and date <= last:
                if date < last or value in position.seen:
                    return []
                position.seen.append(value)
            else:
                position.date = date
                position.seen = [value]
        old = position.reported
        change = value - old if old is not None else value
        position.reported = value
        if not change:
            return self._emit(position, now, _POSITION)
        fills = position.fills
        tolerance = position.tolerance
        if fills:
            match = None  # rule 5: the oldest certain fill of that amount, else the oldest uncertain
            for index, item in enumerate(fills):
                if abs(item[_AMOUNT] - change) <= tolerance:
                    if not item[_UNCERTAIN]:
                        match = index
                        break
                    if match is None:
                        match = index
            if match is not None:
                item = fills.pop(match)
                position.expected += change - item[_AMOUNT]
                return self._emit(position, now, _POSITION)
            if self._prefix(position, fills, change):
                return self._emit(position, now, _POSITION)
            for item in fills:  # rule 9: part of the growth of an order after a gap
                amount = item[_AMOUNT]
                if item[_UNCERTAIN] == _JUMP and abs(change) < abs(amount) and (change > 0) == (amount > 0):
                    item[_AMOUNT] = amount - change
                    return self._emit(position, now, _POSITION)
        elif not position.reports and abs(change) <= tolerance:  # money within the tolerance of nothing
            position.expected += change
            return self._emit(position, now, _POSITION)
        position.reports.append([change, now + self.timeout, 0])
        if not position.queued:
            self._arm(position)
        return self._emit(position, now, _POSITION)

    @staticmethod
    def _prefix(position: _Position, items: list[_Pending], amount: Decimal) -> bool:
        """Match ``amount`` with the oldest two or more of ``items`` if their sum is within the
        tolerance of it (rule 5: one report of several fills, or the reverse)."""
        total = _ZERO
        tolerance = position.tolerance
        for count, item in enumerate(items, 1):
            total += item[_AMOUNT]
            if count > 1 and abs(total - amount) <= tolerance:
                del items[:count]
                # Keep expected - reported = fills pending - reports pending.
                position.expected += (amount - total) if items is position.fills else (total - amount)
                return True
        return False

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
                if not item[_UNCERTAIN]:
                    item[_UNCERTAIN] = _WINDOW
                if item[_DEADLINE] < now:  # it waited while the account awaited this snapshot
                    item[_DEADLINE] = now
                pending += item[_AMOUNT]
            position.expected = value + pending
            self._arm(position)
            out += self._emit(position, now, _SNAPSHOT)
        return out

    def _judge(self, position: _Position, deadline: datetime) -> list[PositionCheck]:
        """The verdicts on the changes of ``position`` due at ``deadline`` (rules 6, 9)."""
        out: list[PositionCheck] = []
        fills, reports = position.fills, position.reports
        while fills and fills[0][_DEADLINE] == deadline:
            item = fills.pop(0)
            if not item[_UNCERTAIN]:
                out.append(self._event(position, deadline, CheckStatus.MISSING, _TIMEOUT, -item[_AMOUNT]))
            position.expected -= item[_AMOUNT]
        while reports and reports[0][_DEADLINE] == deadline:
            item = reports.pop(0)
            out.append(self._event(position, deadline, CheckStatus.UNEXPLAINED, _TIMEOUT, item[_AMOUNT]))
            position.expected += item[_AMOUNT]
        return out + self._emit(position, deadline, _REBASE)

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

    def _emit(self, position: _Position, time: datetime, cause: CheckCause) -> list[PositionCheck]:
        """An event if the position's state differs from the one last emitted (rule 10)."""
        status = _PENDING if position.fills or position.reports else _MATCHED
        expected, reported = position.expected, position.reported
        last = position.last
        if (
            last is not None
            and last.status is status
            and last.expected == expected
            and last.reported == reported
        ):
            return []
        account_id, uid, currency = position.key
        difference = (reported if reported is not None else _ZERO) - expected
        seq = position.seq
        position.seq = seq + 1
        event = position.last = _check(
            account_id, uid, currency, time, expected, reported, difference, status, cause, seq
        )
        return [event]

    def _arm(self, position: _Position) -> None:
        """Keep the heap's invariant: a position with anything pending has a (possibly early) entry."""
        if not position.queued and (position.fills or position.reports) and not position.account.awaiting:
            heapq.heappush(self._heap, (self._deadline(position), position.key))
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
                position.queued = False
                continue
            actual = self._deadline(position)
            if actual == deadline:
                return deadline
            heapq.heapreplace(heap, (actual, key))
        return None
