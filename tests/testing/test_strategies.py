"""rxinvest.testing.strategies draws what it says: values the codec round-trips, books on their
grid, tapes with real bursts and late prints, and order scripts whose positions are their fills
(summed here from the order states alone, never from the script's own bookkeeping)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest import ops, wire
from rxinvest.derived import CheckStatus
from rxinvest.testing import strategies as s
from rxinvest.testing.marbles import run_marbles, seconds_of

BUY = m.OrderDirection.ORDER_DIRECTION_BUY
START = datetime(2025, 3, 3, 7, tzinfo=UTC)


def round_trips(value: object, stream: str) -> bool:
    """decode(encode(x)) == x as a server frame of ``stream``, and as a plain JSON object."""
    return wire.decode(wire.encode(value), stream=stream) == value and (
        wire.load(type(value), wire.dump(value)) == value
    )


# --- scalars and any message ----------------------------------------------------------------------


@given(tick=st.sampled_from(s.TICKS), data=st.data())
def test_prices_are_on_their_grid(tick: Decimal, data: st.DataObject) -> None:
    price = data.draw(s.prices(tick, max_ticks=1000))
    assert price % tick == 0 and abs(price) <= 1000 * tick


@given(value=s.quotations())
def test_quotations_fit_a_quotation(value: Decimal) -> None:
    units = int(value)  # truncates toward zero, like the wire's units
    nano = (value - units).scaleb(9)
    assert nano == int(nano) and abs(nano) < 10**9 and s.INT64[0] <= units <= s.INT64[1]


@given(moment=s.utc_datetimes(min_value=START, max_value=START + timedelta(days=1)))
def test_utc_datetimes_are_aware_utc_within_bounds(moment: datetime) -> None:
    assert moment.tzinfo is UTC and START <= moment <= START + timedelta(days=1)


@pytest.mark.parametrize("cls", [m.Trade, m.OrderBook, m.OrderState, m.PositionData, m.Candle])
@given(data=st.data())
def test_messages_of_every_event_type_round_trip(cls: type, data: st.DataObject) -> None:
    value = data.draw(s.messages(cls))
    assert isinstance(value, cls) and wire.load(cls, wire.dump(value)) == value


def test_model_classes_are_the_wire_messages() -> None:
    classes = s.model_classes()
    assert {m.Trade, m.OrderBook, m.OrderState, m.PositionData, m.PositionsResponse} <= set(classes)
    assert m.Money not in classes and m.KindSpec not in classes


# --- order books -------------------------------------------------------------------------------------


@given(depth=st.integers(1, 50), tick=st.sampled_from(s.TICKS), data=st.data())
def test_books_are_uncrossed_and_sorted_on_the_grid(depth: int, tick: Decimal, data: st.DataObject) -> None:
    book = data.draw(s.order_books(depth=depth, tick=tick))
    bids = [level.price for level in book.bids]
    asks = [level.price for level in book.asks]
    assert bids == sorted(set(bids), reverse=True) and asks == sorted(set(asks))  # best first, once each
    assert not bids or not asks or bids[0] < asks[0]
    assert len(bids) <= depth and len(asks) <= depth and book.depth == depth
    assert all(p is not None and p > 0 and p % tick == 0 for p in bids + asks)
    assert all(level.quantity >= 1 for level in book.bids + book.asks)
    assert book.time is not None and book.time.tzinfo is UTC and book.is_consistent
    assert round_trips(book, "MarketDataStream")


# --- trades --------------------------------------------------------------------------------------------


@given(trade=s.trades(instruments=["X"], tick=Decimal("0.5"), price_ticks=(10, 20), quantities=(3, 4)))
def test_a_trade_is_what_its_parameters_say(trade: m.Trade) -> None:
    assert trade.instrument_uid == "X" and trade.price is not None and trade.price % Decimal("0.5") == 0
    assert 5 <= trade.price <= 10 and 3 <= trade.quantity <= 4
    assert round_trips(trade, "MarketDataStream")


SPAN, GRID, DELAY = timedelta(minutes=2), timedelta(milliseconds=100), timedelta(seconds=3)


@given(tape=s.trade_tapes(start=START, span=SPAN, resolution=GRID, max_size=80, max_delay=DELAY))
def test_tapes_stay_in_their_window_on_their_grid_and_late_by_at_most_the_delay(tape: list[m.Trade]) -> None:
    assert len(tape) <= 80
    latest = START
    for trade in tape:
        assert trade.time is not None and START <= trade.time <= START + SPAN
        assert (trade.time - START) % GRID == timedelta(0)
        assert latest - trade.time <= DELAY  # later prints than it arrived before it, within the delay
        latest = max(latest, trade.time)
        assert round_trips(trade, "MarketDataStream")


@given(tape=s.trade_tapes(span=SPAN))
def test_without_a_delay_a_tape_is_in_time_order(tape: list[m.Trade]) -> None:
    times = [t.time for t in tape]
    assert times == sorted(times)  # type: ignore[type-var]


#: For find(): shrinking the example found would take long and tells nothing here.
FIND = settings(phases=[Phase.generate], max_examples=1000, database=None)


def test_tapes_have_bursts_that_share_one_timestamp() -> None:
    # A fine grid over an hour: timestamps shared by chance are rare, so what is found is a burst.
    strategy = s.trade_tapes(span=timedelta(hours=1), resolution=timedelta(microseconds=1), max_burst=30)
    tape = find(
        strategy, lambda tape: max(Counter(t.time for t in tape).values(), default=0) >= 10, settings=FIND
    )
    assert max(Counter(t.time for t in tape).values()) >= 10


def test_tapes_have_late_prints_when_asked() -> None:
    def has_a_late_print(tape: list[m.Trade]) -> bool:
        return any(b.time < a.time for a, b in pairwise(tape))  # type: ignore[operator]

    late = find(s.trade_tapes(max_delay=timedelta(seconds=5)), has_a_late_print, settings=FIND)
    assert has_a_late_print(late)


def test_bad_tape_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="resolution"):
        s.trade_tapes(resolution=timedelta(0))
    with pytest.raises(ValueError, match="min_size"):
        s.trade_tapes(min_size=5, max_size=4)


# --- order scripts --------------------------------------------------------------------------------------


def fills_from_states(script: s.OrderScript) -> tuple[dict[str, int], Decimal]:
    """Units per instrument and money the order states say were traded: each order's largest
    cumulative lots and money (repeats and older states add nothing), signed by direction."""
    lots: dict[str, int] = {}
    money: dict[str, Decimal] = {}
    seen: dict[str, m.OrderState] = {}
    for state in script.order_states:
        seen[state.order_id] = state
        lots[state.order_id] = max(lots.get(state.order_id, 0), state.lots_executed)
        assert state.executed_order_price is not None
        money[state.order_id] = max(money.get(state.order_id, Decimal(0)), state.executed_order_price.amount)
    units: dict[str, int] = defaultdict(int)
    cash = Decimal(0)
    for order_id, state in seen.items():
        sign = 1 if state.direction is BUY else -1
        units[state.instrument_uid] += sign * lots[order_id] * state.lot_size
        cash -= sign * money[order_id]
    return units, cash


def latest_reports(script: s.OrderScript) -> tuple[dict[str, int], Decimal]:
    """Each position as the newest-dated report shows it (the opening snapshot's when none)."""
    units = {p.instrument_uid: p.balance for p in script.opening.securities}
    (cash,) = (money.amount for money in script.opening.money)
    for report in sorted(
        (r for r in script.positions if isinstance(r, m.PositionData)), key=lambda r: r.date
    ):
        units.update((p.instrument_uid, p.balance) for p in report.securities)
        for money in report.money:
            assert money.available_value is not None
            cash = money.available_value.amount
    return units, cash


@given(script=s.order_scripts(start=START))
def test_a_scripts_final_positions_are_its_fills(script: s.OrderScript) -> None:
    traded, spent = fills_from_states(script)
    final, cash = latest_reports(script)
    opening = {p.instrument_uid: p.balance for p in script.opening.securities}
    (opening_cash,) = (money.amount for money in script.opening.money)
    assert final == {uid: opening[uid] + traded[uid] for uid in opening} == script.holdings
    assert cash == opening_cash + spent == script.cash


@given(script=s.order_scripts(start=START))
def test_a_script_arrives_in_time_order_and_each_stream_is_consistent(script: s.OrderScript) -> None:
    times = [t for t, _ in script.arrivals]
    assert times == sorted(set(times)) and times[0] == START and script.positions[0] is script.opening
    for state in script.order_states:
        assert 0 <= state.lots_executed <= state.lots_requested and state.lot_size == script.lot_size
        assert state.lots_left + state.lots_executed + state.lots_cancelled == state.lots_requested
    for _, event in script.arrivals[1:]:
        assert round_trips(
            event, "OrderStateStream" if isinstance(event, m.OrderState) else "PositionsStream"
        )
    assert round_trips(script.opening, "PositionsStream")


@settings(max_examples=30)
@given(script=s.order_scripts(start=START))
def test_a_script_reconciles_without_a_verdict(script: s.OrderScript) -> None:
    orders = [(seconds_of(t), e) for t, e in script.arrivals if isinstance(e, m.OrderState)]
    positions = [(seconds_of(t), e) for t, e in script.arrivals if not isinstance(e, m.OrderState)]
    outcome = run_marbles(
        lambda o, p: ops.reconcile_positions(o, p, markers=False, money_tolerance=Decimal(0)),
        orders,
        positions,
        subscribe_at=0,
    )
    checks = outcome.items
    assert not [c for c in checks if c.status in (CheckStatus.UNEXPLAINED, CheckStatus.MISSING)]
    last = {c.instrument_uid: c for c in checks}  # money under ""
    traded, spent = fills_from_states(script)
    opening = {p.instrument_uid: p.balance for p in script.opening.securities}
    (opening_cash,) = (money.amount for money in script.opening.money)
    expected = {**{uid: Decimal(opening[uid] + traded[uid]) for uid in opening}, "": opening_cash + spent}
    assert all(check.status is CheckStatus.MATCHED for check in last.values())
    assert {uid: check.expected for uid, check in last.items()} == {uid: expected[uid] for uid in last}
