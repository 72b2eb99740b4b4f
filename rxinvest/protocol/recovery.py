"""Gap recovery of the account streams over the unary API: what to ask, what the answers mean. Sans-I/O.

The WebSocket proxy has no resume: what an account stream sent while its connection was down is
lost. The unary methods know the state, so after a gap ``(since, until)`` of one account:

============================  ==================================================================
stream                        calls (each answer converted to the stream's own events)
============================  ==================================================================
OrderStateStream              GetOrderState for each order active at the gap, GetOrders (the
                              active orders), GetOrders filtered to the orders created since the
                              gap began in any status, the operations since the gap (paged), then
                              GetOrderState for each order an operation names that none of those
                              answered: ``OrderState``\\ s
TradesStream                  GetOperationsByCursor from ``since`` to the end, page by page:
                              ``OrderTrades``, one per operation, with its trades
PositionsStream               GetPositions: one ``PositionsResponse``
PortfolioStream               GetPortfolio: one ``PortfolioResponse``
============================  ==================================================================

Rules:

* :class:`Seen` is told every event the stream delivered (live or recovered), and keeps only what
  recovery needs, bounded: the last state of each *active* order (forgotten when final), the orders
  delivered final, trade ids, lot sizes (LRUs of ``limit`` entries each).
* A :class:`Plan` is data: it says which calls to make (:meth:`Plan.calls`), takes their answers and
  failures, and says when it is done. :func:`execute` is the small loop that makes the calls with
  any function ``call(method, request) -> answer`` (a :class:`~rxinvest.transport.RestClient`'s
  ``call``, or a stand-in in tests).
* :func:`reconcile` turns the plan's events into what is to be emitted, given the live events that
  arrived after the gap and waited meanwhile (``held``): a recovered order state is dropped if the
  stream delivered that order with the same or a later state, or if a live event of that order is
  waiting (the live one is later: the stream reports every change after the gap); a recovered fill is
  dropped if its trade id was delivered or waits; a snapshot is dropped if a live one of the same
  kind waits. So no event goes out twice and no order ever moves backwards.
* After a recovery, :meth:`Seen.admit` filters the live events that follow: a live order state not
  later than the one recovery emitted, or a fill recovery emitted, is a duplicate (the REST answer was
  ahead of the stream) and is dropped.
* Order of "later": ``(lots_executed, final)``: an order only ever executes more, and ends once.
* Limits of the API, said where they bite: GetOrders' filters apply only to orders created on the
  API's current day, so an order created in a gap before midnight and ended there without a fill is
  in no answer; operations name no order, so the simulator's convention (an
  operation's ``id`` is its order's id) is relied on as best effort: an id that GetOrderState does
  not know is skipped (its fills still reach TradesStream). Fill quantities are in units: from the
  operations where they list the trade, else lots times the lot size the stream told for the order or
  the instrument; a stage whose size cannot be known is left out of ``trades`` (``lots_executed``
  still counts it). Prices are the REST answer's, per unit in the currency: for a bond that is
  money, where the stream gives percent of nominal.

Nothing here is thread-safe: the connection calls :class:`Seen` and :func:`reconcile` under its lock
and runs a plan on one worker thread.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeAlias, TypeVar

import attrs

from rxinvest import model as m
from rxinvest.errors import ApiError, ConfigurationError, RxInvestError
from rxinvest.protocol.events import StreamEvent
from rxinvest.wire import Stream, Unary

__all__ = [
    "NOT_FOUND_CODES",
    "AccountRecovery",
    "Call",
    "Caller",
    "Known",
    "Lru",
    "Plan",
    "Rank",
    "Seen",
    "execute",
    "order_state",
    "order_trades",
    "rank",
    "reconcile",
]

_K = TypeVar("_K")
_V = TypeVar("_V")

#: A function that makes one unary call: ``RestClient.call``, or a stand-in.
Caller: TypeAlias = Callable[[Unary, Any], Any]
#: How far an order has got: (lots executed, 1 once final). Later states compare greater.
Rank: TypeAlias = tuple[int, int]
#: API codes of "no such account" (50004) and "no such order" (50005).
NOT_FOUND_CODES = frozenset({"50004", "50005"})

_S = m.OrderExecutionReportStatus
FINAL = frozenset(
    {
        _S.EXECUTION_REPORT_STATUS_FILL,
        _S.EXECUTION_REPORT_STATUS_REJECTED,
        _S.EXECUTION_REPORT_STATUS_CANCELLED,
    }
)
_T = m.OperationType
_BUY_TYPES = frozenset(
    {
        _T.OPERATION_TYPE_BUY,
        _T.OPERATION_TYPE_BUY_CARD,
        _T.OPERATION_TYPE_BUY_MARGIN,
        _T.OPERATION_TYPE_DELIVERY_BUY,
    }
)
_SELL_TYPES = frozenset(
    {
        _T.OPERATION_TYPE_SELL,
        _T.OPERATION_TYPE_SELL_CARD,
        _T.OPERATION_TYPE_SELL_MARGIN,
        _T.OPERATION_TYPE_DELIVERY_SELL,
    }
)

#: Entries each of a :class:`Seen`'s memories keeps (the oldest go first).
SEEN_LIMIT = 10_000
#: Operations asked for per page (the API's most).
PAGE_LIMIT = 1000
#: Pages of operations one recovery reads at most; past them it stops with an error.
MAX_PAGES = 50
#: GetOrderState calls one recovery makes at most; past them it stops with an error.
MAX_ORDER_CALLS = 200
#: Seconds one recovery may take before it stops with an error (a call under way ends within the REST
#: client's timeout): the account's live events wait meanwhile.
TIME_LIMIT = 60.0
#: Orders and operations are asked for from this long before the gap began: the margin for the error
#: of the gap's translation to the server's clock (a ping's transit, the clocks' drift since the last
#: ping; the clocks' whole difference when no ping told it, see :mod:`rxinvest.protocol.accounts`).
#: The overlap is de-duplicated (by trade id, by order rank).
SLACK = timedelta(minutes=1)


def rank(status: m.OrderExecutionReportStatus, lots_executed: int) -> Rank:
    """How far an order has got (see the module's rules)."""
    return (lots_executed, 1 if status in FINAL else 0)


class Lru(Generic[_K, _V]):
    """A mapping that keeps the ``limit`` most recently written entries (not thread-safe)."""

    __slots__ = ("_data", "_limit")

    def __init__(self, limit: int) -> None:
        self._data: OrderedDict[_K, _V] = OrderedDict()
        self._limit = limit

    def put(self, key: _K, value: _V) -> None:
        data = self._data
        data[key] = value
        data.move_to_end(key)
        if len(data) > self._limit:
            data.popitem(last=False)

    def get(self, key: _K) -> _V | None:
        return self._data.get(key)

    def pop(self, key: _K) -> _V | None:
        return self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def values(self) -> list[_V]:
        return list(self._data.values())

    def items(self) -> list[tuple[_K, _V]]:
        return list(self._data.items())


@attrs.frozen
class Known:
    """What the stream had delivered of one account when a gap began (a :class:`Plan`'s input):
    the last state of each order still active, the orders delivered final, the lot size of each
    instrument uid the stream named."""

    active: tuple[m.OrderState, ...] = ()
    final: frozenset[str] = frozenset()
    lots: Mapping[str, int] = attrs.field(factory=dict)


class Seen:
    """What one account's stream delivered, as far as recovery needs it. Bounded (``limit`` entries
    per memory); not thread-safe."""

    def __init__(self, *, limit: int = SEEN_LIMIT) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit must be a positive int, not {limit!r}")
        self._active: Lru[str, m.OrderState] = Lru(limit)  # order id -> last state, while active
        self._final: Lru[str, Rank] = Lru(limit)  # order id -> its final rank
        self._trades: Lru[str, None] = Lru(limit)  # trade ids delivered
        self._lots: Lru[str, int] = Lru(limit)  # instrument uid -> lot size
        # What recovery emitted, against which later live events are checked (see admit()).
        self._recovered_orders: Lru[str, Rank] = Lru(limit)
        self._recovered_trades: Lru[str, None] = Lru(limit)

    def delivered(self, event: StreamEvent, *, recovered: bool = False) -> None:
        """``event`` went out to the subscribers (``recovered``: it came from a recovery)."""
        if isinstance(event, m.OrderState):
            self._order(event, recovered)
        elif isinstance(event, m.OrderTrades):
            for trade in event.trades:
                self._trades.put(trade.trade_id, None)
                if recovered:
                    self._recovered_trades.put(trade.trade_id, None)

    def _order(self, state: m.OrderState, recovered: bool) -> None:
        if state.lot_size > 0 and state.instrument_uid:
            self._lots.put(state.instrument_uid, state.lot_size)
        for trade in state.trades:
            self._trades.put(trade.trade_id, None)
        order_id = state.order_id
        now = rank(state.execution_report_status, state.lots_executed)
        if recovered:
            self._recovered_orders.put(order_id, now)
        if now[1]:
            self._active.pop(order_id)
            self._final.put(order_id, now)
        else:
            self._active.put(order_id, state)

    def rank_of(self, order_id: str) -> Rank | None:
        """The rank of the last state delivered for ``order_id`` (None: none remembered)."""
        final = self._final.get(order_id)
        if final is not None:
            return final
        state = self._active.get(order_id)
        return None if state is None else rank(state.execution_report_status, state.lots_executed)

    def has_trade(self, trade_id: str) -> bool:
        return trade_id in self._trades

    def known(self) -> Known:
        """What a plan starting now needs (a copy: the plan runs on another thread)."""
        return Known(
            active=tuple(self._active.values()),
            final=frozenset(order_id for order_id, _ in self._final.items()),
            lots=dict(self._lots.items()),
        )

    def admit(self, event: StreamEvent) -> StreamEvent | None:
        """A live event after a recovery: None if it repeats what the recovery emitted (or is older),
        the event without the fills recovery emitted, or the event as it is."""
        if isinstance(event, m.OrderState):
            emitted = self._recovered_orders.get(event.order_id)
            if emitted is None:
                return event
            if rank(event.execution_report_status, event.lots_executed) <= emitted:
                return None
            self._recovered_orders.pop(event.order_id)  # the stream is past it: no more checks
            return event
        if isinstance(event, m.OrderTrades) and len(self._recovered_trades):
            trades = tuple(t for t in event.trades if t.trade_id not in self._recovered_trades)
            if not trades:
                return None
            if len(trades) < len(event.trades):
                return attrs.evolve(event, trades=trades)
        return event


@attrs.frozen
class Call:
    """One unary call a plan asks for: ``call(method, request)``."""

    method: Unary
    request: Any


class Plan:
    """The recovery of one account's gap on one stream, as data (see the module's rules).

    ``gap`` is ``(since, until)`` on the server's clock (the unary API's filters compare it with the
    server's times: :meth:`~rxinvest.protocol.AccountSession.server_gap`); ``slack`` is the margin
    taken before ``since``.

    ``calls()`` gives the calls to make now (each once), ``answer``/``failed`` take their outcome,
    ``done`` says when nothing more is to be asked; then ``events()`` are the stream's events the
    answers stand for, in time order, and ``error`` says what went wrong ("" if nothing did).
    """

    def __init__(
        self,
        stream: Stream,
        account_id: str,
        gap: tuple[datetime, datetime],
        known: Known | None = None,
        *,
        page_limit: int = PAGE_LIMIT,
        max_pages: int = MAX_PAGES,
        max_order_calls: int = MAX_ORDER_CALLS,
        slack: timedelta = SLACK,
    ) -> None:
        self.stream = stream
        self.account_id = account_id
        self.since, self.until = gap
        self.known = known or Known()
        self._page_limit, self._max_pages, self._max_order_calls = page_limit, max_pages, max_order_calls
        self._slack = slack
        self.error = ""
        self._ready: list[Call] = []
        self._outstanding = 0
        self._pages = 0
        self._asked_orders: set[str] = set()
        self._stage = 1
        self._snapshots: dict[str, m.OrderSnapshot] = {}
        self._operations: dict[tuple[str, str], m.OperationItem] = {}  # (id, cursor) -> item
        self._positions: m.PositionsResponse | None = None
        self._portfolio: m.PortfolioResponse | None = None
        account = account_id
        if stream is Stream.ORDER_STATE:
            for state in self.known.active:
                self._ask_order(state.order_id)
            self._ready.append(Call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id=account)))
            since = m.GetOrdersRequestFilters(from_=self.since - slack, execution_status=_EVERY_STATUS)
            self._ready.append(
                Call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id=account, advanced_filters=since))
            )
            self._ask_page("")
        elif stream is Stream.TRADES:
            self._ask_page("")
        elif stream is Stream.POSITIONS:
            self._ready.append(Call(Unary.GET_POSITIONS, m.GetPositionsRequest(account_id=account)))
        elif stream is Stream.PORTFOLIO:
            self._ready.append(Call(Unary.GET_PORTFOLIO, m.PortfolioRequest(account_id=account)))
        else:
            raise ConfigurationError(f"{stream} is not an account stream")

    @property
    def done(self) -> bool:
        return not self._ready and not self._outstanding

    def calls(self) -> list[Call]:
        """The calls to make now; each is to be answered (or failed) once."""
        calls, self._ready = self._ready, []
        self._outstanding += len(calls)
        return calls

    def answer(self, call: Call, response: Any) -> None:
        """The answer of ``call``."""
        self._outstanding -= 1
        if self.error:
            return
        if call.method is Unary.GET_ORDER_STATE and isinstance(response, m.OrderSnapshot):
            self._snapshot(response)
        elif call.method is Unary.GET_ORDERS and isinstance(response, m.GetOrdersResponse):
            for snapshot in response.orders:
                self._snapshot(snapshot)
        elif call.method is Unary.GET_OPERATIONS_BY_CURSOR and isinstance(
            response, m.GetOperationsByCursorResponse
        ):
            for item in response.items:
                self._operations[(item.id, item.cursor)] = item
            if response.has_next and response.next_cursor:
                self._ask_page(response.next_cursor)
        elif call.method is Unary.GET_POSITIONS and isinstance(response, m.PositionsResponse):
            self._positions = attrs.evolve(response, account_id=self.account_id)
        elif call.method is Unary.GET_PORTFOLIO and isinstance(response, m.PortfolioResponse):
            self._portfolio = attrs.evolve(response, account_id=self.account_id)
        else:
            self.error = f"{call.method.value} answered with a {type(response).__name__}"
            return
        self._next_stage()

    def failed(self, call: Call, error: RxInvestError) -> None:
        """``call`` failed with ``error`` (after the client's retries). The plan stops, but for an
        order that an operation named and GetOrderState does not know (see the module's rules)."""
        self._outstanding -= 1
        if self.error:
            return
        request = call.request
        if (
            call.method is Unary.GET_ORDER_STATE
            and isinstance(error, ApiError)
            and error.code in NOT_FOUND_CODES
            and self._stage == 2
        ):
            self._next_stage()
            return
        what = call.method.value
        if isinstance(request, m.GetOrderStateRequest):
            what += f" of order {request.order_id}"
        self.error = f"{what}: {error}"
        self._ready = []

    def abandon(self, reason: str) -> None:
        """Stop asking (the connection is closing): ``reason`` becomes the error."""
        self.error = self.error or reason
        self._ready = []
        self._outstanding = 0

    def _ask_order(self, order_id: str) -> None:
        if self.error or order_id in self._asked_orders:
            return
        if len(self._asked_orders) >= self._max_order_calls:
            self.error = f"more than {self._max_order_calls} orders to ask about; the rest is not recovered"
            self._ready = []
            return
        self._asked_orders.add(order_id)
        request = m.GetOrderStateRequest(account_id=self.account_id, order_id=order_id)
        self._ready.append(Call(Unary.GET_ORDER_STATE, request))

    def _ask_page(self, cursor: str) -> None:
        if self.error:
            return
        if self._pages >= self._max_pages:
            self.error = f"more than {self._max_pages} pages of operations; the rest is not recovered"
            self._ready = []
            return
        self._pages += 1
        request = m.GetOperationsByCursorRequest(
            account_id=self.account_id,
            from_=self.since - self._slack,
            cursor=cursor,
            limit=self._page_limit,
            without_commissions=True,
            without_overnights=True,
        )
        self._ready.append(Call(Unary.GET_OPERATIONS_BY_CURSOR, request))

    def _snapshot(self, snapshot: m.OrderSnapshot) -> None:
        """Keep the later of two answers about one order (GetOrders and GetOrderState may overlap)."""
        old = self._snapshots.get(snapshot.order_id)
        if old is None or _snapshot_rank(snapshot) >= _snapshot_rank(old):
            self._snapshots[snapshot.order_id] = snapshot

    def _next_stage(self) -> None:
        """OrderStateStream: once the first answers are in, ask about the orders only operations named."""
        if self.error or self._stage != 1 or self.stream is not Stream.ORDER_STATE or not self.done:
            return
        self._stage = 2
        for order_id in dict.fromkeys(item.id for item in self._trade_items()):
            if order_id and order_id not in self._snapshots and order_id not in self.known.final:
                self._ask_order(order_id)

    def _trade_items(self) -> list[m.OperationItem]:
        """Operations with trades, in time order."""
        items = [item for item in self._operations.values() if item.trades_info and item.trades_info.trades]
        return sorted(items, key=lambda item: (_time(item.date), item.id))

    def events(self) -> list[StreamEvent]:
        """The events the answers so far stand for, oldest first (before :func:`reconcile`)."""
        if self.stream is Stream.POSITIONS:
            return [] if self._positions is None else [self._positions]
        if self.stream is Stream.PORTFOLIO:
            return [] if self._portfolio is None else [self._portfolio]
        items = self._trade_items()
        if self.stream is Stream.TRADES:
            return [order_trades(item, self.account_id) for item in items]
        units = {t.num: t.quantity for item in items for t in (item.trades_info or _NO_TRADES).trades}
        known = {state.order_id: state for state in self.known.active}
        states: list[m.OrderState] = [
            order_state(
                snapshot, self.account_id, known=known.get(order_id), lots=self.known.lots, units=units
            )
            for order_id, snapshot in self._snapshots.items()
        ]
        states.sort(key=_changed_at)
        return list[StreamEvent](states)


_NO_TRADES = m.OperationItemTrades()


def execute(plan: Plan, call: Caller, *, stop: Callable[[], str] = lambda: "") -> Plan:
    """Make ``plan``'s calls with ``call`` until it is done, or until ``stop()`` gives a reason
    (checked before each call: the connection closed, the time is up), which becomes the plan's error.
    Returns the plan.

    A call that raises an :class:`~rxinvest.errors.RxInvestError` is a failure the plan judges (once
    it has an error, no more calls are made); anything else (a bug) propagates. Terminates: a plan
    asks for finitely many calls.
    """
    while not plan.done:
        for one in plan.calls():
            reason = stop()
            if reason:
                plan.abandon(reason)
                return plan
            if plan.error:  # a call of this batch failed: the rest are not made
                plan.abandon(plan.error)
                return plan
            try:
                response = call(one.method, one.request)
            except RxInvestError as exc:
                plan.failed(one, exc)
            else:
                plan.answer(one, response)
    return plan


def reconcile(seen: Seen, recovered: Iterable[StreamEvent], held: Sequence[StreamEvent]) -> list[StreamEvent]:
    """The recovered events to emit before the ``held`` live ones, given what ``seen`` says was
    delivered (see the module's rules); ``seen`` learns each one kept as recovered."""
    held_orders = {e.order_id for e in held if isinstance(e, m.OrderState)}
    held_trades = {t.trade_id for e in held if isinstance(e, m.OrderState | m.OrderTrades) for t in e.trades}
    held_kinds = {type(e) for e in held if isinstance(e, m.PositionsResponse | m.PortfolioResponse)}
    out: list[StreamEvent] = []
    for event in recovered:
        kept: StreamEvent | None = event
        if isinstance(event, m.OrderState):
            before = seen.rank_of(event.order_id)
            now = rank(event.execution_report_status, event.lots_executed)
            if event.order_id in held_orders or (before is not None and before >= now):
                kept = None
        elif isinstance(event, m.OrderTrades):
            trades = tuple(
                t for t in event.trades if not seen.has_trade(t.trade_id) and t.trade_id not in held_trades
            )
            if not trades:
                kept = None
            elif len(trades) < len(event.trades):
                kept = attrs.evolve(event, trades=trades)
        elif type(event) in held_kinds:
            kept = None
        if kept is not None:
            seen.delivered(kept, recovered=True)
            out.append(kept)
    return out


def order_state(
    snapshot: m.OrderSnapshot,
    account_id: str,
    *,
    known: m.OrderState | None = None,
    lots: Mapping[str, int] | None = None,
    units: Mapping[str, int] | None = None,
) -> m.OrderState:
    """The OrderStateStream event a GetOrderState/GetOrders answer stands for.

    ``known`` is the last state the stream delivered for the order (fields the answer lacks come
    from it: ticker, class code, client code, time in force, exchange, lot size); ``lots`` the lot
    size by instrument uid the stream told; ``units`` the units of each trade id the operations list.
    A stage's quantity in units is ``units[trade_id]``, else its lots times the lot size; a stage
    whose size cannot be known is left out of ``trades``. ``lot_size`` is 0 when unknown.
    """
    units = units or {}
    lot = (known.lot_size if known else 0) or (lots or {}).get(snapshot.instrument_uid, 0)
    if not lot:  # the operations may tell it: units of a trade over its lots
        lot = next(
            (
                units[s.trade_id] // s.quantity
                for s in snapshot.stages
                if s.quantity > 0 and units.get(s.trade_id, 0) % s.quantity == 0 and units.get(s.trade_id)
            ),
            0,
        )
    trades: list[m.OrderTrade] = []
    for stage in snapshot.stages:
        size = units.get(stage.trade_id) or stage.quantity * lot
        if size:
            price = stage.price.amount if stage.price is not None else None
            trades.append(
                m.OrderTrade(
                    date_time=stage.execution_time, price=price, quantity=size, trade_id=stage.trade_id
                )
            )
    status = snapshot.execution_report_status
    requested, executed = snapshot.lots_requested, snapshot.lots_executed
    final = status in FINAL
    times = [s.execution_time for s in snapshot.stages if s.execution_time is not None]
    base = known or m.OrderState()
    return m.OrderState(
        order_id=snapshot.order_id,
        order_request_id=snapshot.order_request_id or base.order_request_id,
        client_code=base.client_code,
        created_at=snapshot.order_date or base.created_at,
        execution_report_status=status,
        ticker=base.ticker,
        class_code=base.class_code,
        lot_size=lot,
        direction=snapshot.direction,
        time_in_force=base.time_in_force,
        order_type=snapshot.order_type,
        account_id=account_id,
        initial_order_price=snapshot.initial_order_price,
        order_price=snapshot.initial_security_price or base.order_price,
        amount=snapshot.initial_order_price,
        executed_order_price=snapshot.executed_order_price,
        currency=snapshot.currency or base.currency,
        lots_requested=requested,
        lots_executed=executed,
        lots_left=0 if final else max(0, requested - executed),
        lots_cancelled=max(0, requested - executed)
        if final and status is not _S.EXECUTION_REPORT_STATUS_FILL
        else 0,
        trades=tuple(trades),
        # The answer says when the last fill was, not when a cancel happened.
        completion_time=max(times) if status is _S.EXECUTION_REPORT_STATUS_FILL and times else None,
        exchange=base.exchange,
        instrument_uid=snapshot.instrument_uid or base.instrument_uid,
    )


def order_trades(item: m.OperationItem, account_id: str) -> m.OrderTrades:
    """The TradesStream event an operation with trades stands for: its trades (quantities in units,
    prices per unit), under the operation's ``id`` as the order id (see the module's rules)."""
    direction = (
        m.OrderDirection.ORDER_DIRECTION_BUY
        if item.type in _BUY_TYPES
        else m.OrderDirection.ORDER_DIRECTION_SELL
        if item.type in _SELL_TYPES
        else m.OrderDirection.ORDER_DIRECTION_UNSPECIFIED
    )
    trades = tuple(
        m.OrderTrade(
            date_time=t.date,
            price=t.price.amount if t.price is not None else None,
            quantity=t.quantity,
            trade_id=t.num,
        )
        for t in (item.trades_info or _NO_TRADES).trades
    )
    return m.OrderTrades(
        order_id=item.id,
        created_at=item.date,
        direction=direction,
        figi=item.figi,
        trades=trades,
        account_id=account_id,
        instrument_uid=item.instrument_uid,
    )


class AccountRecovery:
    """Gap recovery for one account-stream connection: the caller of the unary methods, and a
    :class:`Seen` per account. ``AccountConnection(..., recovery=AccountRecovery(rest.call, stream))``.

    ``limit`` bounds each memory of a :class:`Seen`; ``time_limit`` is the seconds a recovery may
    take; ``plan_options`` go to every :class:`Plan` (``max_pages``, ``max_order_calls`` ...).

    Not thread-safe: the connection calls it under its lock (but for :func:`execute`, which needs
    only the plan and ``call``).
    """

    def __init__(
        self,
        call: Caller,
        stream: Stream,
        *,
        limit: int = SEEN_LIMIT,
        time_limit: float = TIME_LIMIT,
        **plan_options: Any,
    ) -> None:
        if stream not in (Stream.ORDER_STATE, Stream.TRADES, Stream.POSITIONS, Stream.PORTFOLIO):
            raise ConfigurationError(f"{stream} is not an account stream")
        if isinstance(time_limit, bool) or not isinstance(time_limit, int | float) or not time_limit > 0:
            raise ConfigurationError(f"time_limit must be a positive number of seconds, not {time_limit!r}")
        self.call = call
        self.stream = stream
        #: Seconds a recovery may take (its live events wait meanwhile); then it stops with an error.
        self.time_limit = float(time_limit)
        self._limit = limit
        self._plan_options = plan_options
        self._seen: dict[str, Seen] = {}

    def seen(self, account_id: str) -> Seen:
        seen = self._seen.get(account_id)
        if seen is None:
            seen = self._seen[account_id] = Seen(limit=self._limit)
        return seen

    def plan(self, account_id: str, gap: tuple[datetime, datetime]) -> Plan:
        """The plan of ``account_id``'s gap (on the server's clock, see :class:`Plan`), from what its
        stream has delivered so far."""
        return Plan(self.stream, account_id, gap, self.seen(account_id).known(), **self._plan_options)


def _snapshot_rank(snapshot: m.OrderSnapshot) -> Rank:
    return rank(snapshot.execution_report_status, snapshot.lots_executed)


#: Every status an order can have, asked for explicitly: what the API does with an empty list is not
#: documented.
_EVERY_STATUS = tuple(
    status
    for status in m.OrderExecutionReportStatus
    if status is not m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_UNSPECIFIED
)

_DAWN = datetime.min.replace(tzinfo=UTC)


def _time(when: datetime | None) -> datetime:
    """A sort key for optional aware times: missing ones first."""
    return _DAWN if when is None else when


def _changed_at(state: m.OrderState) -> tuple[datetime, str]:
    """When an order last changed, as far as its state tells: its last fill, else its creation."""
    times = [t.date_time for t in state.trades if t.date_time is not None]
    return (_time(max(times) if times else state.created_at), state.order_id)
