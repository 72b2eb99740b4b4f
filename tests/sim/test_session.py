"""The per-connection session of the simulator, sans-I/O: requests in, outputs out; no sockets, no threads.

Expected values are written out by hand from the catalogue, the default accounts and the rules of
the session's docstring. Market events are built by hand too, so that the tests choose every step's
simulated time (the throttle is counted in it).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest.sim.broker import Broker, default_accounts
from rxinvest.sim.faults import Faults
from rxinvest.sim.instruments import CATALOGUE, InstrumentIndex
from rxinvest.sim.market import CandleUpdate, Market, StepEvents
from rxinvest.sim.session import Access, Close, Session, SessionSettings, SetPingDelay, StartBurst
from rxinvest.wire import Stream

START = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
SBER = "e6123145-9665-43e0-8413-cd61b8aa9b13"
GAZP = "962e2a95-02a9-4171-abd7-aa198dbe643a"
FIRST, SECOND = "2000000001", "2000000002"  # the default accounts: 1 000 000 and 250 000 rub
SUB = m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE
UNSUB = m.SubscriptionAction.SUBSCRIPTION_ACTION_UNSUBSCRIBE
SUCCESS = m.SubscriptionStatus.SUBSCRIPTION_STATUS_SUCCESS
MINUTE = m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE
RUB = "rub"
NO_FAULTS, DEFAULTS = Faults(), SessionSettings()


def session(
    stream: Stream = Stream.MARKET_DATA,
    *,
    access: Access = "full",
    faults: Faults = NO_FAULTS,
    settings: SessionSettings = DEFAULTS,
) -> Session:
    return Session(
        stream,
        access=access,
        stream_id="stream-1",
        market=Market(CATALOGUE, seed=1, start=START),
        broker=Broker(CATALOGUE, default_accounts(CATALOGUE), seed=1),
        instruments=InstrumentIndex(CATALOGUE),
        settings=settings,
        faults=faults,
        rng=random.Random(0),
        opened=0.0,
        new_tracking_id=lambda: "tracking-1",
    )


def receive(s: Session, request: object, now: float = 0.0) -> list[object]:
    return s.receive(request, now=now, clock=START)


def books(*items: tuple[str, int], action: m.SubscriptionAction = SUB) -> m.SubscribeOrderBookRequest:
    return m.SubscribeOrderBookRequest(
        subscription_action=action,
        instruments=tuple(m.OrderBookInstrument(instrument_id=i, depth=d) for i, d in items),
    )


def candles(instrument_id: str = "SBER_TQBR", *, waiting_close: bool = False) -> m.SubscribeCandlesRequest:
    return m.SubscribeCandlesRequest(
        subscription_action=SUB,
        instruments=(m.CandleInstrument(instrument_id=instrument_id, interval=MINUTE),),
        waiting_close=waiting_close,
    )


def at(ms: int) -> datetime:
    return START + timedelta(milliseconds=ms)


def of_type(outputs: list[object], kind: type) -> list[object]:
    return [o for o in outputs if isinstance(o, kind)]


# --- subscribe answers and snapshots --------------------------------------------------------------


def test_a_book_subscription_is_answered_then_shows_the_current_book() -> None:
    s = session()
    answer, book = receive(s, books(("SBER_TQBR", 10)))

    assert isinstance(answer, m.SubscribeOrderBookResponse)
    assert answer.tracking_id == "tracking-1"
    (entry,) = answer.order_book_subscriptions
    assert (entry.figi, entry.instrument_uid, entry.ticker, entry.class_code) == (
        "BBG004730N88",
        SBER,
        "SBER",
        "TQBR",
    )
    assert (entry.depth, entry.order_book_type) == (10, m.OrderBookType.ORDERBOOK_TYPE_ALL)  # the default
    assert (entry.subscription_status, entry.subscription_action) == (SUCCESS, SUB)
    assert entry.stream_id == "stream-1"
    assert entry.subscription_id

    assert isinstance(book, m.OrderBook)
    assert (book.instrument_uid, book.depth, book.time, book.is_consistent) == (SBER, 10, START, True)
    assert len(book.bids) == len(book.asks) == 10
    assert book.bids[0].price < book.asks[0].price  # around the opening price 285.40, not crossed
    assert book.bids[0].price < Decimal("285.40") < book.asks[0].price


def test_last_price_and_status_subscriptions_show_their_current_value_at_once() -> None:
    s = session()
    prices = receive(
        s,
        m.SubscribeLastPriceRequest(
            subscription_action=SUB, instruments=(m.LastPriceInstrument(instrument_id="GAZP_TQBR"),)
        ),
    )
    status = receive(
        s,
        m.SubscribeInfoRequest(subscription_action=SUB, instruments=(m.InfoInstrument(instrument_id=SBER),)),
    )

    assert isinstance(prices[0], m.SubscribeLastPriceResponse)
    assert prices[1:] == [
        m.LastPrice(
            figi="BBG004730RP0",
            price=Decimal("178.97"),  # nothing traded yet: the opening price
            time=START,
            ticker="GAZP",
            class_code="TQBR",
            instrument_uid=GAZP,
            last_price_type=m.LastPriceType.LAST_PRICE_EXCHANGE,
        )
    ]
    assert isinstance(status[0], m.SubscribeInfoResponse)
    assert status[1:] == [
        m.TradingStatus(
            figi="BBG004730N88",
            trading_status=m.SecurityTradingStatus.SECURITY_TRADING_STATUS_NORMAL_TRADING,
            time=START,
            limit_order_available_flag=True,
            market_order_available_flag=True,
            instrument_uid=SBER,
            ticker="SBER",
            class_code="TQBR",
        )
    ]


def test_candles_and_trades_have_nothing_to_show_before_the_first_trade() -> None:
    s = session()
    trades = m.SubscribeTradesRequest(
        subscription_action=SUB, instruments=(m.TradeInstrument(instrument_id=SBER),)
    )
    assert [type(o) for o in receive(s, candles())] == [m.SubscribeCandlesResponse]
    assert [type(o) for o in receive(s, trades)] == [m.SubscribeTradesResponse]


def test_refused_entries_show_nothing_and_their_answer_says_why() -> None:
    s = session()
    (answer,) = receive(s, books(("NOT_AN_INSTRUMENT", 10), ("GAZP_TQBR", 7)))
    missing, bad_depth = answer.order_book_subscriptions
    assert missing.subscription_status is m.SubscriptionStatus.SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND
    assert (missing.instrument_uid, missing.depth, missing.subscription_id) == ("", 0, "")
    assert bad_depth.subscription_status is m.SubscriptionStatus.SUBSCRIPTION_STATUS_DEPTH_IS_INVALID
    assert (bad_depth.instrument_uid, bad_depth.depth) == (GAZP, 7)
    assert bad_depth.order_book_type is m.OrderBookType.ORDERBOOK_TYPE_ALL
    assert bad_depth.subscription_id == ""
    assert len(s.subscriptions) == 0


def test_an_unspecified_trade_source_means_all() -> None:
    s = session()
    (answer,) = receive(
        s,
        m.SubscribeTradesRequest(
            subscription_action=SUB, instruments=(m.TradeInstrument(instrument_id="SBER_TQBR"),)
        ),
    )
    assert answer.trade_source is m.TradeSourceType.TRADE_SOURCE_ALL
    (subscription,) = s.subscriptions
    assert subscription.trade_source is m.TradeSourceType.TRADE_SOURCE_ALL


def test_a_failed_candle_entry_echoes_the_requests_waiting_close() -> None:
    s = session()
    (answer,) = receive(s, candles("NOT_AN_INSTRUMENT", waiting_close=True))
    (entry,) = answer.candles_subscriptions
    assert entry.subscription_status is m.SubscriptionStatus.SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND
    assert entry.waiting_close is True
    assert entry.interval is m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED


def test_subscribing_again_shows_no_second_snapshot_and_starts_no_second_burst() -> None:
    s = session(faults=Faults(burst=True))
    first = receive(s, books(("SBER_TQBR", 1)))
    again = receive(s, books(("SBER_TQBR", 1)))
    assert [type(o) for o in first] == [m.SubscribeOrderBookResponse, m.OrderBook, StartBurst]
    assert [type(o) for o in again] == [m.SubscribeOrderBookResponse]
    assert (
        again[0].order_book_subscriptions[0].subscription_id
        == first[0].order_book_subscriptions[0].subscription_id
    )


def test_get_my_subscriptions_lists_the_active_ones_by_kind_in_kind_order() -> None:
    s = session()
    assert receive(s, m.GetMySubscriptions()) == []  # nothing active: no answer at all
    info = receive(
        s,
        m.SubscribeInfoRequest(subscription_action=SUB, instruments=(m.InfoInstrument(instrument_id=SBER),)),
    )[0]
    made = receive(s, books(("SBER_TQBR", 1), ("GAZP_TQBR", 20)))[0]
    receive(s, books(("GAZP_TQBR", 20), action=UNSUB))

    book_answer, info_answer = receive(s, m.GetMySubscriptions())

    assert isinstance(book_answer, m.SubscribeOrderBookResponse)  # books come before info
    assert book_answer.tracking_id == "tracking-1"
    (entry,) = book_answer.order_book_subscriptions
    assert (entry.instrument_uid, entry.depth, entry.subscription_status, entry.subscription_action) == (
        SBER,
        1,
        SUCCESS,
        SUB,
    )
    assert entry.subscription_id == made.order_book_subscriptions[0].subscription_id
    assert isinstance(info_answer, m.SubscribeInfoResponse)
    assert [e.instrument_uid for e in info_answer.info_subscriptions] == [SBER]
    assert info_answer.info_subscriptions[0].subscription_id == info.info_subscriptions[0].subscription_id
    inspected = s.my_subscriptions("inspect")  # what Simulator.my_subscriptions shows
    assert [type(r) for r in inspected] == [m.SubscribeOrderBookResponse, m.SubscribeInfoResponse]
    assert inspected[0].tracking_id == "inspect"
    assert [e.instrument_uid for e in inspected[0].order_book_subscriptions] == [SBER]


def test_the_server_side_stream_takes_one_request_of_every_kind_in_kind_order() -> None:
    s = session(Stream.MARKET_DATA_SERVER_SIDE)
    request = m.MarketDataServerSideStreamRequest(
        subscribe_last_price_request=m.SubscribeLastPriceRequest(
            subscription_action=SUB, instruments=(m.LastPriceInstrument(instrument_id="SBER_TQBR"),)
        ),
        subscribe_order_book_request=books(("GAZP_TQBR", 1)),
        ping_settings=m.PingDelaySettings(ping_delay_ms=30_000),
    )
    outputs = receive(s, request)
    assert [type(o) for o in outputs] == [
        SetPingDelay,
        m.SubscribeOrderBookResponse,
        m.OrderBook,
        m.SubscribeLastPriceResponse,
        m.LastPrice,
    ]
    assert outputs[0] == SetPingDelay(30.0)
    assert receive(s, request) == []  # one request only: the rest are ignored


# --- pings --------------------------------------------------------------------------------------------


def test_a_ping_request_is_answered_with_its_time() -> None:
    sent = datetime(2025, 11, 21, 9, 59, 59, 123456, tzinfo=UTC)
    assert receive(session(), m.PingRequest(time=sent)) == [
        m.Ping(time=START, stream_id="stream-1", ping_request_time=sent)
    ]


# The documented limits of the ping interval, in ms, per stream.
LIMITS = {
    Stream.MARKET_DATA: (5_000, 180_000),
    Stream.ORDER_STATE: (1_000, 120_000),
    Stream.TRADES: (5_000, 180_000),
    Stream.PORTFOLIO: (5_000, 180_000),
}


def asking(stream: Stream, delay_ms: int) -> object:
    """The request of ``stream`` that asks for pings every ``delay_ms``."""
    return {
        Stream.MARKET_DATA: m.PingDelaySettings(ping_delay_ms=delay_ms),
        Stream.ORDER_STATE: m.OrderStateStreamRequest(accounts=(FIRST,), ping_delay_millis=delay_ms),
        Stream.TRADES: m.TradesStreamRequest(accounts=(FIRST,), ping_delay_ms=delay_ms),
        Stream.PORTFOLIO: m.PortfolioStreamRequest(
            accounts=(FIRST,), ping_settings=m.PingDelaySettings(ping_delay_ms=delay_ms)
        ),
    }[stream]


@given(stream=st.sampled_from(sorted(LIMITS)), delay_ms=st.integers(0, 250_000))
def test_a_ping_interval_inside_the_documented_range_is_taken_else_the_stream_is_closed(
    stream: Stream, delay_ms: int
) -> None:
    s = session(stream)
    low, high = LIMITS[stream]
    outputs = receive(s, asking(stream, delay_ms))
    if low <= delay_ms <= high:
        assert outputs[0] == SetPingDelay(delay_ms / 1000)
        assert not of_type(outputs, Close)
    else:
        assert outputs == [Close(4003, f"ping delay must be in [{low}, {high}] ms, not {delay_ms}")]
        assert s.accounts == ()  # an account stream refused this way subscribes nothing


def test_the_min_ping_delay_setting_lowers_the_floor_for_tests() -> None:
    s = session(settings=SessionSettings(min_ping_delay=0.05))
    assert receive(s, m.PingDelaySettings(ping_delay_ms=50)) == [SetPingDelay(0.05)]
    assert receive(s, m.PingDelaySettings(ping_delay_ms=49)) == [
        Close(4003, "ping delay must be in [50, 180000] ms, not 49")
    ]
    assert receive(s, m.PingDelaySettings()) == []  # no value: nothing changes


# --- fan-out of market events and the throttle ----------------------------------------------------


def trade(uid: str) -> m.Trade:
    return m.Trade(instrument_uid=uid, price=Decimal(1), quantity=1, time=START)


def test_events_go_to_their_subscriptions_only() -> None:
    s = session()
    receive(
        s,
        m.SubscribeTradesRequest(
            subscription_action=SUB, instruments=(m.TradeInstrument(instrument_id="SBER_TQBR"),)
        ),
    )
    receive(
        s,
        m.SubscribeInfoRequest(subscription_action=SUB, instruments=(m.InfoInstrument(instrument_id=GAZP),)),
    )
    sber, gazp = trade(SBER), trade(GAZP)
    status = m.TradingStatus(instrument_uid=GAZP, time=START)
    interest = m.OpenInterest(instrument_uid=SBER, open_interest=5)
    price = m.LastPrice(instrument_uid=SBER)
    step = StepEvents(
        time=at(100),
        trades=[sber, gazp],
        statuses=[status, m.TradingStatus(instrument_uid=SBER)],
        open_interest=[interest],
        last_prices=[price],
    )
    assert s.on_step(step, now=1.0) == [status, sber]  # statuses first; no open interest unasked


def test_open_interest_comes_with_trades_when_asked_for() -> None:
    s = session()
    receive(
        s,
        m.SubscribeTradesRequest(
            subscription_action=SUB,
            instruments=(m.TradeInstrument(instrument_id="SBER_TQBR"),),
            with_open_interest=True,
        ),
    )
    interest = m.OpenInterest(instrument_uid=SBER, open_interest=5)
    assert s.on_step(StepEvents(time=at(100), open_interest=[interest]), now=1.0) == [interest]


def book_times(steps: list[tuple[int, bool]]) -> list[int]:
    """Subscribe a SBER book at 0 ms (its snapshot goes out then), run ``steps`` of (ms, book changed);
    returns the times (ms) at which books went out, the snapshot's included."""
    s = session()
    snapshot = of_type(receive(s, books(("SBER_TQBR", 10))), m.OrderBook)
    sent = [0] * len(snapshot)
    for ms, changed in steps:
        outputs = s.on_step(StepEvents(time=at(ms), books={SBER} if changed else set()), now=1.0)
        sent += [ms] * len(of_type(outputs, m.OrderBook))
    return sent


step_times = st.lists(st.tuples(st.integers(1, 250), st.booleans()), max_size=60).map(
    lambda gaps: [(sum(g for g, _ in gaps[: i + 1]), changed) for i, (_, changed) in enumerate(gaps)]
)


@given(steps=step_times)
def test_books_of_a_subscription_go_out_at_most_once_per_100_ms_of_simulated_time(
    steps: list[tuple[int, bool]],
) -> None:
    """What holds for any step times: (1) no two books of one subscription less than 100 ms apart;
    (2) a step that changes the book sends it unless one went out less than 100 ms before; (3) a step
    that does not change it sends nothing. A change held back is not sent later by itself: the next
    book sent (with the next change at least 100 ms after the last) shows it."""
    sent = book_times(steps)
    assert all(b - a >= 100 for a, b in pairwise(sent))
    for ms, changed in steps:
        if not changed:
            assert ms not in sent
        else:
            earlier = [t for t in sent if t < ms]
            held_back = bool(earlier) and ms - earlier[-1] < 100
            assert (ms in sent) is not held_back


def test_a_change_inside_the_window_waits_for_the_next_change() -> None:
    # 0 ms: the snapshot; 60: held back; 100: sent; 150: held back; 400: the next change, sent.
    steps = [(60, True), (100, True), (150, True), (250, False), (400, True)]
    assert book_times(steps) == [0, 100, 400]


def test_the_throttle_lets_through_at_100_ms_not_before() -> None:
    assert book_times([(99, True), (100, True), (199, True), (200, True)]) == [0, 100, 200]
    s = session()
    receive(s, candles())
    sent = []
    for ms in (10, 109, 110, 209, 210):
        sent += [ms] * len(s.on_step(StepEvents(time=at(ms), candles=[CandleUpdate(candle(ms))]), now=1.0))
    assert sent == [10, 110, 210]


def candle(close: int, *, minute: int = 0) -> m.Candle:
    """A one-minute SBER candle; ``close`` tells the test's candles apart."""
    return m.Candle(
        figi="BBG004730N88",
        interval=MINUTE,
        close=Decimal(close),
        time=START + timedelta(minutes=minute),
        instrument_uid=SBER,
    )


def test_only_the_latest_forming_candle_of_a_step_goes_out_and_closed_ones_always() -> None:
    s = session()
    receive(s, candles())
    first = s.on_step(
        StepEvents(time=at(100), candles=[CandleUpdate(candle(1)), CandleUpdate(candle(2))]), now=1
    )
    assert first == [candle(2)]
    # 50 ms later: the forming candle is held back, the closing one is not.
    closing = [
        CandleUpdate(candle(3)),
        CandleUpdate(candle(4), closed=True),
        CandleUpdate(candle(5, minute=1)),
    ]
    assert s.on_step(StepEvents(time=at(150), candles=closing), now=1) == [candle(4)]
    # A closed candle in a step drops the forming states of that candle before it.
    late = [
        CandleUpdate(candle(6, minute=1)),
        CandleUpdate(candle(7, minute=1), closed=True, corrective=True),
    ]
    assert s.on_step(StepEvents(time=at(300), candles=late), now=1) == [candle(7, minute=1)]
    assert s.on_step(StepEvents(time=at(400), candles=[CandleUpdate(candle(8, minute=1))]), now=1) == [
        candle(8, minute=1)
    ]


@given(
    steps=st.lists(
        st.tuples(st.integers(1, 250), st.lists(st.booleans(), min_size=1, max_size=4)), max_size=40
    )
)
def test_forming_candles_are_throttled_and_closed_candles_never_are(
    steps: list[tuple[int, list[bool]]],
) -> None:
    """For any steps of candle updates (each closed or forming), a step sends every closed candle, in
    order, then the last forming state after its last closed one, if there is one and the last forming
    candle went out 100 ms or more before (in simulated time). So closed candles are never held back,
    and forming ones never go out less than 100 ms apart."""
    s = session()
    receive(s, candles())
    ms, serial, last_forming = 0, 0, None
    for gap, kinds in steps:
        ms += gap
        updates = []
        for closed in kinds:
            serial += 1
            updates.append(CandleUpdate(candle(serial), closed=closed))
        closed_ones = [u.candle for u in updates if u.closed]
        last_closed = max((i for i, u in enumerate(updates) if u.closed), default=-1)
        after_close = [u.candle for u in updates[last_closed + 1 :] if not u.closed]
        forming = []
        if after_close and (last_forming is None or ms - last_forming >= 100):
            forming, last_forming = [after_close[-1]], ms
        assert s.on_step(StepEvents(time=at(ms), candles=updates), now=1.0) == closed_ones + forming


def test_a_candle_subscription_waiting_for_the_close_gets_closed_candles_only() -> None:
    s = session()
    receive(s, candles(waiting_close=True))
    updates = [
        CandleUpdate(candle(1)),
        CandleUpdate(candle(2), closed=True),
        CandleUpdate(candle(3, minute=1)),
    ]
    assert s.on_step(StepEvents(time=at(500), candles=updates), now=1) == [candle(2)]


def test_a_stream_without_subscriptions_is_closed_after_the_idle_timeout() -> None:
    s = session(settings=SessionSettings(idle_timeout=120.0))
    quiet = StepEvents(time=at(100))
    assert s.on_step(quiet, now=119.9) == []
    assert s.on_step(quiet, now=120.0) == [Close(4008, "80004: no active subscriptions")]

    s = session(settings=SessionSettings(idle_timeout=120.0))
    receive(s, books(("SBER_TQBR", 1)), now=50.0)
    assert s.on_step(quiet, now=500.0) == []  # subscribed: never idle
    receive(s, books(("SBER_TQBR", 1), action=UNSUB), now=60.0)
    assert s.on_step(quiet, now=179.9) == []  # idle since 60 s
    assert s.on_step(quiet, now=180.0) == [Close(4008, "80004: no active subscriptions")]

    never = session(settings=SessionSettings(idle_timeout=None))
    assert never.on_step(quiet, now=10_000.0) == []


def test_book_faults_distort_what_the_session_sends() -> None:
    s = session(faults=Faults(crossed_books=1.0))
    book = of_type(receive(s, books(("SBER_TQBR", 10))), m.OrderBook)[0]
    assert not book.is_consistent
    assert book.bids[0].price > book.asks[-1].price  # a bid above every ask


def test_new_faults_reach_the_subscriptions() -> None:
    s = session()
    s.set_faults(Faults(too_many_requests=True))
    (answer,) = receive(s, books(("SBER_TQBR", 1)))
    assert answer.order_book_subscriptions[0].subscription_status is (
        m.SubscriptionStatus.SUBSCRIPTION_STATUS_TOO_MANY_REQUESTS
    )
    assert s.faults == Faults(too_many_requests=True)


def test_new_faults_start_a_burst_only_over_subscriptions() -> None:
    s = session()
    assert s.set_faults(Faults(burst=True)) == []  # nothing subscribed: nothing to burst
    s.set_faults(NO_FAULTS)
    receive(s, books(("SBER_TQBR", 1)))
    assert s.set_faults(Faults(burst=True)) == [StartBurst()]
    assert s.set_faults(NO_FAULTS) == []


# --- account streams ----------------------------------------------------------------------------------

OK = m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_OK
ERROR = m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_ERROR


def subscription_response(accounts: tuple[str, ...], error: m.ErrorDetail | None) -> m.SubscriptionResponse:
    return m.SubscriptionResponse(
        tracking_id="tracking-1",
        status=ERROR if error else OK,
        stream_id="stream-1",
        accounts=accounts,
        error=error,
    )


@pytest.mark.parametrize("stream", [Stream.ORDER_STATE, Stream.TRADES])
def test_order_streams_grant_known_accounts_to_a_full_token(stream: Stream) -> None:
    request = {Stream.ORDER_STATE: m.OrderStateStreamRequest, Stream.TRADES: m.TradesStreamRequest}[stream]
    s = session(stream)
    assert receive(s, request(accounts=(FIRST, SECOND))) == [subscription_response((FIRST, SECOND), None)]
    assert s.accounts == (FIRST, SECOND)

    s = session(stream)
    assert receive(s, request(accounts=(FIRST, "999"))) == [
        subscription_response((FIRST,), m.ErrorDetail(code="50004", message="account not found: 999"))
    ]
    assert s.accounts == (FIRST,)

    s = session(stream, access="readonly")
    assert receive(s, request(accounts=(FIRST, SECOND))) == [
        subscription_response(
            (), m.ErrorDetail(code="40002", message=f"insufficient privileges: {FIRST}, {SECOND}")
        )
    ]
    assert s.accounts == ()

    s = session(stream)
    assert receive(s, request()) == [
        subscription_response(
            (), m.ErrorDetail(code="50004", message="account not found: no accounts requested")
        )
    ]


def test_the_portfolio_stream_answers_per_account_then_shows_each_granted_portfolio() -> None:
    s = session(Stream.PORTFOLIO)
    result, portfolio = receive(s, m.PortfolioStreamRequest(accounts=(SECOND, "999")))
    status = m.PortfolioSubscriptionStatus
    assert result == m.PortfolioSubscriptionResult(
        accounts=(
            m.AccountSubscriptionStatus(
                account_id=SECOND, subscription_status=status.PORTFOLIO_SUBSCRIPTION_STATUS_SUCCESS
            ),
            m.AccountSubscriptionStatus(
                account_id="999", subscription_status=status.PORTFOLIO_SUBSCRIPTION_STATUS_ACCOUNT_NOT_FOUND
            ),
        ),
        tracking_id="tracking-1",
        stream_id="stream-1",
    )
    assert isinstance(portfolio, m.PortfolioResponse)
    assert portfolio.account_id == SECOND
    assert portfolio.total_amount_currencies == m.Money(Decimal(250_000), RUB)  # roubles only
    assert portfolio.total_amount_shares == m.Money(Decimal(0), RUB)
    assert s.accounts == (SECOND,)

    readonly = session(Stream.PORTFOLIO, access="readonly")
    (refused,) = receive(readonly, m.PortfolioStreamRequest(accounts=(FIRST,)))
    assert refused.accounts[0].subscription_status is status.PORTFOLIO_SUBSCRIPTION_STATUS_ACCOUNT_NOT_FOUND


def test_the_positions_stream_shows_initial_positions_only_when_asked() -> None:
    granted = m.PositionsAccountSubscriptionStatus.POSITIONS_SUBSCRIPTION_STATUS_SUCCESS
    s = session(Stream.POSITIONS)
    result, initial = receive(s, m.PositionsStreamRequest(accounts=(SECOND,), with_initial_positions=True))
    assert result == m.PositionsSubscriptionResult(
        accounts=(m.PositionsSubscriptionStatus(account_id=SECOND, subscription_status=granted),),
        tracking_id="tracking-1",
        stream_id="stream-1",
    )
    assert initial == m.PositionsResponse(
        money=(m.Money(Decimal(250_000), RUB),),
        blocked=(m.Money(Decimal(0), RUB),),
        securities=(),
        account_id=SECOND,
    )
    assert [
        type(o) for o in receive(session(Stream.POSITIONS), m.PositionsStreamRequest(accounts=(SECOND,)))
    ] == [m.PositionsSubscriptionResult]


def test_account_events_reach_the_streams_and_accounts_they_belong_to() -> None:
    orders = session(Stream.ORDER_STATE)
    receive(orders, m.OrderStateStreamRequest(accounts=(FIRST,)))
    positions = session(Stream.POSITIONS)
    receive(positions, m.PositionsStreamRequest(accounts=(FIRST, SECOND)))
    portfolio = session(Stream.PORTFOLIO)
    receive(portfolio, m.PortfolioStreamRequest(accounts=(SECOND, FIRST)))
    nobody = session(Stream.TRADES, access="readonly")
    receive(nobody, m.TradesStreamRequest(accounts=(FIRST,)))

    mine = m.OrderState(order_id="1", account_id=FIRST)
    theirs = m.OrderState(order_id="2", account_id=SECOND)
    moved = m.PositionData(account_id=SECOND)
    events = [mine, theirs, moved]
    snapshots = {a: m.PortfolioResponse(account_id=a) for a in (FIRST, SECOND)}

    assert orders.on_account_events(events, snapshots.__getitem__) == [mine]
    assert positions.on_account_events(events, snapshots.__getitem__) == [moved]
    assert portfolio.on_account_events(events, snapshots.__getitem__) == [snapshots[FIRST], snapshots[SECOND]]
    assert nobody.on_account_events(events, snapshots.__getitem__) == []
