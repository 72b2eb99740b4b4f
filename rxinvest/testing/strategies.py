"""Hypothesis strategies for rxinvest's events: what the project's own tests draw, for yours.

Needs hypothesis: ``pip install 'rxinvest[testing]'``. Importing this module without it raises
ImportError saying so; ``import rxinvest.testing`` and its marbles never need it.

Rules of this module:

* **Values are what the codec gives.** Money and prices are exact ``Decimal`` (prices on a tick
  grid), instants aware ``datetime`` at microsecond precision, attributes the proto field names;
  every value drawn here encodes and decodes back to itself (``rxinvest.wire``).
* **Units are stated.** Quantities of trades, book levels and orders are in lots; position
  balances in units (pieces); ``lot_size`` converts. Durations are ``timedelta``.
* **Generic and purposeful strategies.** :func:`messages` draws any model class with every field
  independent: the codec's fuzz food, mostly nonsense as market data. The others draw *coherent*
  data: :func:`order_books` (uncrossed, on a grid), :func:`trade_tapes` (bursts and late prints),
  :func:`order_scripts` (an account's orders and the positions they make), in UTC.
* **Deterministic shapes.** Apart from what a strategy draws, nothing depends on the clock or on
  randomness outside hypothesis, so failures shrink and replay.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from typing import Any

import attrs

try:
    from hypothesis import strategies as st
except ImportError as exc:  # say what to install, not just what is missing
    needed = "rxinvest.testing.strategies needs hypothesis: pip install 'rxinvest[testing]'"
    raise ImportError(needed) from exc

from rxinvest import model as m
from rxinvest.wire.schema import FieldSpec, WireType, fields_of

# No __all__: two of its names are market-data kind names, which only model/kinds.py may write as
# strings (tests/test_architecture.py). Public: the constants, the strategies and OrderScript below.

#: The int64 range (inclusive), the range of the API's int64 fields.
INT64 = (-(2**63), 2**63 - 1)
#: The int32 range (inclusive).
INT32 = (-(2**31), 2**31 - 1)

#: Minimum price increments seen on MOEX: shares, bonds (percent), futures points, FX.
TICKS = tuple(map(Decimal, ("0.01", "0.1", "0.5", "1", "0.0001", "0.0025", "0.000000001", "10")))

#: Where the coherent strategies put their data by default: 10:00 Moscow time on a trading day.
MORNING = datetime(2025, 11, 21, 7, 0, tzinfo=UTC)

_BUY, _SELL = m.TradeDirection.TRADE_DIRECTION_BUY, m.TradeDirection.TRADE_DIRECTION_SELL


# --- scalars -------------------------------------------------------------------------------------


def prices(tick: Decimal | None = None, *, max_ticks: int = 10**12) -> st.SearchStrategy[Decimal]:
    """Prices on a tick grid: ``tick`` (a ``Decimal`` price step, or one of :data:`TICKS`) times an
    integer in ``[-max_ticks, max_ticks]``; negative prices included (spreads, futures, bonds' yields
    can be negative)."""
    ticks = st.just(tick) if tick is not None else st.sampled_from(TICKS)
    return st.builds(lambda t, n: t * n, ticks, st.integers(-max_ticks, max_ticks))


def quotations() -> st.SearchStrategy[Decimal]:
    """Any ``Decimal`` a Quotation can carry: tick-grid prices, the int64 units / 9-decimal nano
    extremes, and zero."""
    extremes = st.builds(
        lambda units, nano: Decimal(units) + Decimal(nano).scaleb(-9) * (1 if units >= 0 else -1),
        st.integers(*INT64),
        st.integers(0, 10**9 - 1),
    )
    return st.one_of(prices(), extremes, st.just(Decimal(0)))


def datetimes() -> st.SearchStrategy[datetime]:
    """Aware datetimes at microsecond precision over years 1-9999, in UTC and two other fixed
    offsets (+03:00, -05:30): what a Timestamp field may be given. The codec always decodes to UTC;
    equal instants compare equal whatever their offset."""
    zones = st.sampled_from([UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-5, minutes=-30))])
    return st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)


def utc_datetimes(
    *,
    min_value: datetime = datetime(2000, 1, 1, tzinfo=UTC),
    max_value: datetime = datetime(2100, 1, 1, tzinfo=UTC),
) -> st.SearchStrategy[datetime]:
    """Aware UTC datetimes at microsecond precision in ``[min_value, max_value]`` (aware bounds)."""
    return st.datetimes(
        min_value=min_value.astimezone(UTC).replace(tzinfo=None),
        max_value=max_value.astimezone(UTC).replace(tzinfo=None),
        timezones=st.just(UTC),
    )


def money() -> st.SearchStrategy[m.Money]:
    """``Money`` of any Quotation amount in a few currencies, any case and empty included (the
    codec lower-cases: ``"RUB"`` and ``"rub"`` compare equal)."""
    return st.builds(m.Money, quotations(), st.sampled_from(["rub", "usd", "RUB", "eur", "cny", ""]))


def texts() -> st.SearchStrategy[str]:
    """Identifiers (a FIGI, a uid, a ticker, a class code, empty) and free text: any Unicode that
    JSON can carry (no lone surrogates), up to 20 characters."""
    return st.one_of(
        st.sampled_from(["", "BBG004730RP0", "962e2a95-02a9-4171-abd7-aa198dbe643a", "SBER", "TQBR"]),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    )


# --- any model class -----------------------------------------------------------------------------


def _scalar(spec: FieldSpec) -> st.SearchStrategy[Any]:
    kind = spec.kind
    if kind is WireType.STRING:
        return texts()
    if kind is WireType.BOOL:
        return st.booleans()
    if kind is WireType.INT64:
        return st.one_of(st.integers(*INT64), st.integers(0, 10**6))
    if kind is WireType.INT32:
        return st.integers(*INT32)
    if kind is WireType.QUOTATION:
        return quotations()
    if kind is WireType.MONEY:
        return money()
    if kind is WireType.TIMESTAMP:
        return datetimes()
    if kind is WireType.ENUM:
        target: type[enum.Enum] = spec.target
        return st.sampled_from(list(target))
    return st.deferred(lambda: messages(spec.target))


def _field(spec: FieldSpec) -> st.SearchStrategy[Any]:
    value = _scalar(spec)
    if spec.repeated:
        return st.lists(value, max_size=3).map(tuple)
    return st.none() | value if spec.nullable else value


@cache
def messages(cls: type) -> st.SearchStrategy[Any]:
    """Any instance of the model class ``cls`` (one of :func:`model_classes`), every field drawn
    independently from the codec's field specs: int64 values up to the limits, every enum member,
    empty and short (up to 3) repeated fields, absent optional values, :func:`quotations`,
    :func:`money`, :func:`datetimes` and :func:`texts`. Cached per class."""
    return st.builds(cls, **{spec.name: _field(spec) for spec in fields_of(cls)})


def model_classes() -> list[type]:
    """Every wire message class of ``rxinvest.model`` (its attrs classes but ``Money``, a value,
    and ``KindSpec``, a row of the kinds table), in the model's ``__all__`` order."""
    return [
        cls
        for name in m.__all__
        if isinstance(cls := getattr(m, name), type) and attrs.has(cls) and cls not in (m.Money, m.KindSpec)
    ]


# --- order books ---------------------------------------------------------------------------------


def order_books(
    *,
    depth: int = 20,
    tick: Decimal = Decimal("0.01"),
    instrument_uid: str = "962e2a95-02a9-4171-abd7-aa198dbe643a",
    figi: str = "BBG004730RP0",
    times: st.SearchStrategy[datetime] | None = None,
) -> st.SearchStrategy[m.OrderBook]:
    """Uncrossed, consistent exchange books of one instrument on one tick grid.

    Bids strictly descending below asks strictly ascending (best first), 0 to ``depth`` levels a
    side, neighbouring levels 1 to 3 ticks apart, every price a positive multiple of ``tick`` (a
    ``Decimal`` price step), quantities 1 to 10**6 lots; ``depth`` is the book's requested depth;
    ``time`` from ``times`` (default: :func:`utc_datetimes`).
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, not {depth}")
    when = times if times is not None else utc_datetimes()

    @st.composite
    def build(draw: st.DrawFn) -> m.OrderBook:
        # The mid is far enough above zero that 'depth' bids of 3 ticks each stay positive.
        mid = draw(st.integers(3 * depth + 2, 10**7))
        bid_gaps = draw(st.lists(st.integers(1, 3), max_size=depth))
        ask_gaps = draw(st.lists(st.integers(1, 3), max_size=depth))
        quantity = st.integers(1, 10**6)

        def side(gaps: list[int], sign: int) -> tuple[m.Order, ...]:
            level, out = mid, []
            for gap in gaps:
                level += sign * gap
                out.append(m.Order(price=level * tick, quantity=draw(quantity)))
            return tuple(out)

        return m.OrderBook(
            figi=figi,
            depth=depth,
            is_consistent=True,
            bids=side(bid_gaps, -1),
            asks=side(ask_gaps, +1),
            time=draw(when),
            instrument_uid=instrument_uid,
            order_book_type=m.OrderBookType.ORDERBOOK_TYPE_EXCHANGE,
        )

    return build()


# --- trades --------------------------------------------------------------------------------------


def trades(
    *,
    instruments: Sequence[str] = ("A", "B"),
    tick: Decimal = Decimal("0.01"),
    price_ticks: tuple[int, int] = (9_000, 11_000),
    quantities: tuple[int, int] = (1, 50),
    times: st.SearchStrategy[datetime] | None = None,
) -> st.SearchStrategy[m.Trade]:
    """One exchange trade (``Trade``) of one of ``instruments`` (instrument uids).

    ``price`` is ``tick`` (a ``Decimal`` price step) times an integer in ``price_ticks``
    (inclusive; by default 90.00 to 110.00), ``quantity`` an integer number of lots in
    ``quantities`` (inclusive), ``direction`` buy, sell or unspecified, ``time`` from ``times``
    (default: :func:`utc_datetimes`), ``trade_source`` the exchange.
    """
    return st.builds(
        _trade,
        st.sampled_from(list(instruments)),
        st.integers(*price_ticks).map(lambda n: n * tick),
        st.integers(*quantities),
        st.sampled_from([_BUY, _SELL, m.TradeDirection.TRADE_DIRECTION_UNSPECIFIED]),
        times if times is not None else utc_datetimes(),
    )


def _trade(uid: str, price: Decimal, quantity: int, direction: m.TradeDirection, time: datetime) -> m.Trade:
    return m.Trade(
        instrument_uid=uid,
        price=price,
        quantity=quantity,
        direction=direction,
        time=time,
        trade_source=m.TradeSourceType.TRADE_SOURCE_EXCHANGE,
    )


def trade_tapes(
    *,
    instruments: Sequence[str] = ("A", "B"),
    tick: Decimal = Decimal("0.01"),
    price_ticks: tuple[int, int] = (9_000, 11_000),
    quantities: tuple[int, int] = (1, 50),
    start: datetime = MORNING,
    span: timedelta = timedelta(minutes=10),
    resolution: timedelta = timedelta(milliseconds=250),
    min_size: int = 0,
    max_size: int = 60,
    max_burst: int = 20,
    max_delay: timedelta = timedelta(0),
) -> st.SearchStrategy[list[m.Trade]]:
    """Trade tapes: lists of trades (drawn like :func:`trades`) in the order a subscriber gets them.

    Exchange times lie in ``[start, start + span]`` (``start`` aware) on a ``resolution`` grid, so
    trades often share a timestamp; on top of that, *bursts* of 2 to ``max_burst`` trades share one
    timestamp on purpose (an auction's uncrossing, a sweep of the book; ``max_burst`` 1: none).
    With a ``max_delay`` above zero some trades (about half) are *late prints*: they arrive up to
    ``max_delay`` (rounded down to the grid) after their exchange time, and the tape is in arrival
    order, so a late print comes after trades with later exchange times. Without (the default), the
    tape is in exchange-time order, trades of one timestamp in the order drawn. Between
    ``min_size`` and ``max_size`` trades.
    """
    if resolution <= timedelta(0) or span < timedelta(0) or max_delay < timedelta(0):
        raise ValueError("resolution must be positive, span and max_delay not negative")
    if not 0 <= min_size <= max_size or max_burst < 1:
        raise ValueError("need 0 <= min_size <= max_size and max_burst >= 1")
    slots, late_slots = span // resolution, max_delay // resolution
    one = trades(
        instruments=instruments,
        tick=tick,
        price_ticks=price_ticks,
        quantities=quantities,
        times=st.just(start),
    )

    @st.composite
    def build(draw: st.DrawFn) -> list[m.Trade]:
        size = draw(st.integers(min_size, max_size))
        # Groups of trades at one slot of the grid: mostly single trades, some bursts.
        burst = st.integers(2, max_burst) if max_burst > 1 else st.just(1)
        groups: list[int] = []
        while sum(groups) < size:
            groups.append(min(draw(st.one_of(st.just(1), burst)), size - sum(groups)))
        at = sorted(draw(st.lists(st.integers(0, slots), min_size=len(groups), max_size=len(groups))))
        drawn: list[tuple[int, int, m.Trade]] = []  # (arrival slot, position in time order, trade)
        for slot, count in zip(at, groups, strict=True):
            for _ in range(count):
                trade = attrs.evolve(draw(one), time=start + slot * resolution)
                delay = draw(st.integers(0, late_slots)) if late_slots and draw(st.booleans()) else 0
                drawn.append((slot + delay, len(drawn), trade))
        return [trade for _, _, trade in sorted(drawn, key=lambda d: (d[0], d[1]))]

    return build()


# --- order scripts -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class OrderScript:
    """One account's orders and the positions they make, as the two account streams deliver them.

    ``arrivals`` holds (arrival time, event) pairs in arrival order, arrival times strictly
    increasing: first ``opening``, the positions stream's initial snapshot (``PositionsResponse``),
    then ``OrderState`` events of the order stream and ``PositionData`` reports of the positions
    stream, interleaved. Each stream's own events are :attr:`order_states` and :attr:`positions`.

    The broker behind it is simple and exact: every fill of ``n`` lots gives an ``OrderState`` with
    the order's new *cumulative* ``lots_executed`` and ``executed_order_price`` (the money of all
    its fills), and a ``PositionData`` dated at the fill with the instrument's new *absolute*
    balance in units (lots x ``lot_size``; buys add, sells remove; it may go below zero, a short) and
    the new money balance; nothing is ever blocked. ``holdings`` (units per instrument uid) and
    ``cash`` are what the broker holds at the end.
    """

    account_id: str
    lot_size: int
    currency: str
    opening: m.PositionsResponse
    arrivals: tuple[tuple[datetime, m.OrderState | m.PositionsResponse | m.PositionData], ...]
    holdings: dict[str, int]
    cash: Decimal

    @property
    def order_states(self) -> tuple[m.OrderState, ...]:
        """The order stream's events, in arrival order (repeats included)."""
        return tuple(e for _, e in self.arrivals if isinstance(e, m.OrderState))

    @property
    def positions(self) -> tuple[m.PositionsResponse | m.PositionData, ...]:
        """The positions stream's events, in arrival order: ``opening`` first, then the reports."""
        return tuple(e for _, e in self.arrivals if not isinstance(e, m.OrderState))


@attrs.define
class _Order:
    order_id: str
    uid: str
    direction: m.OrderDirection
    requested: int
    executed: int = 0
    money: Decimal = Decimal(0)
    status: m.OrderExecutionReportStatus = m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_NEW


_ST = m.OrderExecutionReportStatus
_OPEN = (_ST.EXECUTION_REPORT_STATUS_NEW, _ST.EXECUTION_REPORT_STATUS_PARTIALLYFILL)
_ORDER_DIRECTIONS = [m.OrderDirection.ORDER_DIRECTION_BUY, m.OrderDirection.ORDER_DIRECTION_SELL]
#: What a step of a script does, drawn uniformly: fills weigh three times as much as the others.
_STEPS = ("place", "fill", "fill", "fill", "cancel", "duplicate")


def order_scripts(
    *,
    account_id: str = "2000000001",
    instruments: Sequence[str] = ("uid-a", "uid-b"),
    lot_sizes: Sequence[int] = (1, 10, 100),
    tick: Decimal = Decimal("0.01"),
    price_ticks: tuple[int, int] = (1, 100_000),
    start: datetime = MORNING,
    spacing: timedelta = timedelta(milliseconds=100),
    max_steps: int = 40,
) -> st.SearchStrategy[OrderScript]:
    """Scripts of one account's trading for reconciliation (:class:`OrderScript`), in rubles.

    Up to ``max_steps`` steps, each one of: *place* an order (a buy or a sell of 1 to 10 lots of
    one of ``instruments``, uids; an ``OrderState`` NEW), *fill* part or all of an open order
    (at a price of ``tick`` x an integer in ``price_ticks``, per unit; PARTIALLYFILL or FILL, and
    its ``PositionData``, which may arrive before or after the order state), *cancel* an open order
    (CANCELLED; no report), or *duplicate*: deliver again an earlier order state or report (a
    repeat, or an older state after a newer one). One ``lot_size`` (from ``lot_sizes``) for the
    script. Arrivals are ``spacing`` apart from ``start`` (aware); a report is dated at its fill.
    The opening balance of each instrument is 0 to 1,000 lots, the opening cash 10**9 rubles.
    """
    if max_steps < 0 or spacing <= timedelta(0) or not instruments or not lot_sizes:
        raise ValueError("need max_steps >= 0, a positive spacing, instruments and lot sizes")

    @st.composite
    def build(draw: st.DrawFn) -> OrderScript:
        lot = draw(st.sampled_from(list(lot_sizes)))
        holdings = {uid: lot * draw(st.integers(0, 1_000)) for uid in instruments}
        cash = Decimal(10**9)
        clock = [start]

        def rub(amount: Decimal) -> m.Money:
            return m.Money(amount=amount, currency="rub")

        opening = m.PositionsResponse(
            account_id=account_id,
            money=(rub(cash),),
            blocked=(rub(Decimal(0)),),
            securities=tuple(m.PositionsSecurities(instrument_uid=u, balance=n) for u, n in holdings.items()),
        )
        arrivals: list[tuple[datetime, Any]] = [(start, opening)]
        delivered: list[Any] = []  # order states and reports, for duplicates
        orders: list[_Order] = []

        def arrive(event: Any) -> None:
            clock[0] += spacing
            arrivals.append((clock[0], event))
            delivered.append(event)

        def state(order: _Order) -> m.OrderState:
            done = order.status in (_ST.EXECUTION_REPORT_STATUS_FILL, _ST.EXECUTION_REPORT_STATUS_CANCELLED)
            return m.OrderState(
                order_id=order.order_id,
                order_request_id=f"request-{order.order_id}",
                execution_report_status=order.status,
                lot_size=lot,
                direction=order.direction,
                account_id=account_id,
                executed_order_price=rub(order.money),
                currency="rub",
                lots_requested=order.requested,
                lots_executed=order.executed,
                lots_left=0 if done else order.requested - order.executed,
                lots_cancelled=order.requested - order.executed
                if order.status is _ST.EXECUTION_REPORT_STATUS_CANCELLED
                else 0,
                instrument_uid=order.uid,
            )

        for _ in range(draw(st.integers(0, max_steps))):
            is_open = [o for o in orders if o.status in _OPEN]
            step = draw(st.sampled_from(_STEPS))
            if step == "duplicate" and delivered:
                arrive(draw(st.sampled_from(delivered)))
            elif step in ("fill", "cancel") and is_open:
                order = draw(st.sampled_from(is_open))
                if step == "cancel":
                    order.status = _ST.EXECUTION_REPORT_STATUS_CANCELLED
                    arrive(state(order))
                    continue
                lots = draw(st.integers(1, order.requested - order.executed))
                amount = draw(st.integers(*price_ticks)) * tick * lots * lot
                sign = 1 if order.direction is m.OrderDirection.ORDER_DIRECTION_BUY else -1
                order.executed += lots
                order.money += amount
                order.status = (
                    _ST.EXECUTION_REPORT_STATUS_FILL
                    if order.executed == order.requested
                    else _ST.EXECUTION_REPORT_STATUS_PARTIALLYFILL
                )
                holdings[order.uid] += sign * lots * lot
                cash -= sign * amount
                report = m.PositionData(
                    account_id=account_id,
                    securities=(
                        m.PositionsSecurities(instrument_uid=order.uid, balance=holdings[order.uid]),
                    ),
                    money=(m.PositionsMoney(available_value=rub(cash), blocked_value=rub(Decimal(0))),),
                    date=clock[0] + spacing,  # the fill's time: when the first of its two events arrives
                )
                pair = [state(order), report]
                for event in reversed(pair) if draw(st.booleans()) else pair:
                    arrive(event)
            else:
                orders.append(
                    _Order(
                        order_id=f"order-{len(orders) + 1}",
                        uid=draw(st.sampled_from(list(instruments))),
                        direction=draw(st.sampled_from(_ORDER_DIRECTIONS)),
                        requested=draw(st.integers(1, 10)),
                    )
                )
                arrive(state(orders[-1]))
        return OrderScript(
            account_id=account_id,
            lot_size=lot,
            currency="rub",
            opening=opening,
            arrivals=tuple(arrivals),
            holdings=dict(holdings),
            cash=cash,
        )

    return build()
