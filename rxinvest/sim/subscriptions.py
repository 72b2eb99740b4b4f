"""MarketDataStream subscriptions as the proxy keeps them for one stream: sans-I/O.

:class:`SubscriptionBook` answers each ``Subscribe*Request`` with its ``Subscribe*Response``: one
entry per requested instrument, in request order, with a ``SubscriptionStatus`` each. The rules
(spec §1.6-§1.8, and the simulator's choices where the docs are silent):

* an instrument id is a FIGI, an instrument uid or ``TICKER_CLASSCODE`` (the deprecated ``figi``
  field is read when ``instrument_id`` is empty); unknown: INSTRUMENT_NOT_FOUND;
* the simulated market is an exchange only: a dealer book or dealer trades get SOURCE_IS_INVALID;
* with ``internal_errors`` (a fault), entries fail at random with INTERNAL_ERROR;
* candles need an interval (INTERVAL_IS_INVALID), books a depth of 1, 10, 20, 30, 40 or 50
  (DEPTH_IS_INVALID); an UNSPECIFIED action gets SUBSCRIPTION_ACTION_IS_INVALID;
* at most ``max_subscriptions`` (300) candle, book and trade subscriptions together; more get
  LIMIT_IS_EXCEEDED. Trading-status and last-price subscriptions are not counted;
* more than ``max_requests_per_minute`` (100) subscription requests in a sliding minute: every entry
  gets TOO_MANY_REQUESTS;
* a subscription is identified by (instrument, interval) for candles, (instrument, depth, book
  type) for books and the instrument for the other kinds; subscribing again is idempotent (SUCCESS,
  same subscription id; request-level flags such as ``waiting_close`` take the new value);
  unsubscribing what is not subscribed gets SUBSCRIPTION_NOT_FOUND.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from rxinvest import model as m
from rxinvest.sim.instruments import Instrument, InstrumentIndex

__all__ = ["BOOK_DEPTHS", "Subscription", "SubscriptionBook"]

BOOK_DEPTHS = frozenset({1, 10, 20, 30, 40, 50})
_Status = m.SubscriptionStatus
_Action = m.SubscriptionAction
_COUNTED = ("candles", "order_books", "trades")


@attrs.define
class Subscription:
    """One active subscription: its kind, key, instrument and the parameters it was made with."""

    kind: str  # "candles" | "order_books" | "trades" | "info" | "last_prices"
    key: tuple[Any, ...]
    instrument: Instrument
    subscription_id: str
    interval: m.SubscriptionInterval = m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED
    waiting_close: bool = False
    candle_source_type: m.CandleSourceFilter | None = None
    depth: int = 0
    order_book_type: m.OrderBookType = m.OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED
    trade_source: m.TradeSourceType = m.TradeSourceType.TRADE_SOURCE_UNSPECIFIED
    with_open_interest: bool = False


class SubscriptionBook:
    """The subscriptions of one MarketDataStream connection.

    ``now`` arguments are monotonic seconds (only differences matter). Not thread-safe.
    """

    def __init__(
        self,
        instruments: InstrumentIndex,
        *,
        stream_id: str,
        max_subscriptions: int = 300,
        max_requests_per_minute: int = 100,
        refuse_all: bool = False,
        internal_errors: float = 0.0,
        rng: random.Random | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.instruments = instruments
        self.stream_id = stream_id
        self.max_subscriptions = max_subscriptions
        self.max_requests_per_minute = max_requests_per_minute
        self.refuse_all = refuse_all
        self.internal_errors = internal_errors
        self._rng = rng or random.Random(0)
        self._new_id = new_id
        self._active: dict[str, dict[tuple[Any, ...], Subscription]] = {
            kind: {} for kind in ("candles", "order_books", "trades", "info", "last_prices")
        }
        self._requests: deque[float] = deque()

    # --- queries -------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Subscription]:
        for subscriptions in self._active.values():
            yield from subscriptions.values()

    def __len__(self) -> int:
        return sum(map(len, self._active.values()))

    def of(self, kind: str) -> dict[tuple[Any, ...], Subscription]:
        return self._active[kind]

    @property
    def counted(self) -> int:
        """Subscriptions that count against ``max_subscriptions``."""
        return sum(len(self._active[kind]) for kind in _COUNTED)

    # --- requests ------------------------------------------------------------------------------------

    def handle(self, request: Any, *, now: float, tracking_id: str) -> tuple[Any, list[Subscription]]:
        """Apply one subscription request; returns its response and the subscriptions it created."""
        handler = {
            m.SubscribeCandlesRequest: self._candles,
            m.SubscribeOrderBookRequest: self._order_books,
            m.SubscribeTradesRequest: self._trades,
            m.SubscribeInfoRequest: self._info,
            m.SubscribeLastPriceRequest: self._last_prices,
        }[type(request)]
        refused = self._rate_limited(now) or self.refuse_all
        created: list[Subscription] = []
        entries = [self._entry(request, item, refused, created) for item in request.instruments]
        response = handler(request, entries, tracking_id)
        return response, created

    def my_subscriptions(self, tracking_id: str) -> list[Any]:
        """The getMySubscriptions answer: one response per kind that has active subscriptions."""
        out = []
        action = _Action.SUBSCRIPTION_ACTION_SUBSCRIBE
        for kind, build in (
            ("candles", self._candles),
            ("order_books", self._order_books),
            ("trades", self._trades),
            ("info", self._info),
            ("last_prices", self._last_prices),
        ):
            active = list(self._active[kind].values())
            if active:
                entries = [
                    (sub.instrument, sub, _Status.SUBSCRIPTION_STATUS_SUCCESS, action) for sub in active
                ]
                out.append(build(None, entries, tracking_id))
        return out

    def _rate_limited(self, now: float) -> bool:
        window = self._requests
        while window and now - window[0] >= 60.0:
            window.popleft()
        window.append(now)
        return len(window) > self.max_requests_per_minute

    def _entry(
        self, request: Any, item: Any, refused: bool, created: list[Subscription]
    ) -> tuple[Instrument | None, Subscription | None, m.SubscriptionStatus, m.SubscriptionAction]:
        """Decide one instrument of a request; returns (instrument, subscription, status, action)."""
        action = request.subscription_action
        kind = _KIND[type(request)]
        instrument = self.instruments.get(item.instrument_id or item.figi)
        if refused:
            return instrument, None, _Status.SUBSCRIPTION_STATUS_TOO_MANY_REQUESTS, action
        if action is _Action.SUBSCRIPTION_ACTION_UNSPECIFIED:
            return instrument, None, _Status.SUBSCRIPTION_STATUS_SUBSCRIPTION_ACTION_IS_INVALID, action
        if instrument is None:
            return None, None, _Status.SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND, action
        if self.internal_errors and self._rng.random() < self.internal_errors:
            return instrument, None, _Status.SUBSCRIPTION_STATUS_INTERNAL_ERROR, action
        probe = self._describe(kind, request, item, instrument)
        if probe.order_book_type is m.OrderBookType.ORDERBOOK_TYPE_DEALER or (
            probe.trade_source is m.TradeSourceType.TRADE_SOURCE_DEALER
        ):
            return instrument, probe, _Status.SUBSCRIPTION_STATUS_SOURCE_IS_INVALID, action
        if kind == "candles" and probe.interval is m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED:
            return instrument, probe, _Status.SUBSCRIPTION_STATUS_INTERVAL_IS_INVALID, action
        if kind == "order_books" and probe.depth not in BOOK_DEPTHS:
            return instrument, probe, _Status.SUBSCRIPTION_STATUS_DEPTH_IS_INVALID, action
        active = self._active[kind]
        existing = active.get(probe.key)
        if action is _Action.SUBSCRIPTION_ACTION_UNSUBSCRIBE:
            if existing is None:
                return instrument, probe, _Status.SUBSCRIPTION_STATUS_SUBSCRIPTION_NOT_FOUND, action
            del active[probe.key]
            return instrument, existing, _Status.SUBSCRIPTION_STATUS_SUCCESS, action
        if existing is not None:  # idempotent: same id, request-level flags updated
            existing.waiting_close = probe.waiting_close
            existing.candle_source_type = probe.candle_source_type
            existing.trade_source = probe.trade_source
            existing.with_open_interest = probe.with_open_interest
            return instrument, existing, _Status.SUBSCRIPTION_STATUS_SUCCESS, action
        if kind in _COUNTED and self.counted >= self.max_subscriptions:
            return instrument, probe, _Status.SUBSCRIPTION_STATUS_LIMIT_IS_EXCEEDED, action
        probe.subscription_id = self._new_id()
        active[probe.key] = probe
        created.append(probe)
        return instrument, probe, _Status.SUBSCRIPTION_STATUS_SUCCESS, action

    @staticmethod
    def _describe(kind: str, request: Any, item: Any, instrument: Instrument) -> Subscription:
        uid = instrument.uid
        if kind == "candles":
            return Subscription(
                kind,
                (uid, item.interval),
                instrument,
                "",
                interval=item.interval,
                waiting_close=request.waiting_close,
                candle_source_type=request.candle_source_type,
            )
        if kind == "order_books":
            book_type = item.order_book_type
            if book_type is m.OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED:
                book_type = m.OrderBookType.ORDERBOOK_TYPE_ALL  # the API's default
            return Subscription(
                kind,
                (uid, item.depth, book_type),
                instrument,
                "",
                depth=item.depth,
                order_book_type=book_type,
            )
        if kind == "trades":
            source = request.trade_source
            if source is m.TradeSourceType.TRADE_SOURCE_UNSPECIFIED:
                source = m.TradeSourceType.TRADE_SOURCE_ALL  # the API's default
            return Subscription(
                kind,
                (uid,),
                instrument,
                "",
                trade_source=source,
                with_open_interest=request.with_open_interest,
            )
        return Subscription(kind, (uid,), instrument, "")

    # --- responses, one builder per kind -------------------------------------------------------------

    def _common(
        self, instrument: Instrument | None, sub: Subscription | None, status: Any, action: Any
    ) -> dict[str, Any]:
        return {
            "figi": instrument.figi if instrument else "",
            "subscription_status": status,
            "instrument_uid": instrument.uid if instrument else "",
            "stream_id": self.stream_id,
            "subscription_id": sub.subscription_id
            if sub and status is _Status.SUBSCRIPTION_STATUS_SUCCESS
            else "",
            "subscription_action": action,
            "ticker": instrument.ticker if instrument else "",
            "class_code": instrument.class_code if instrument else "",
        }

    def _candles(self, request: Any, entries: list[Any], tracking_id: str) -> m.SubscribeCandlesResponse:
        items = []
        for instrument, sub, status, action in entries:
            items.append(
                m.CandleSubscription(
                    interval=sub.interval
                    if sub
                    else m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED,
                    waiting_close=sub.waiting_close if sub else bool(request and request.waiting_close),
                    candle_source_type=sub.candle_source_type if sub else None,
                    **self._common(instrument, sub, status, action),
                )
            )
        return m.SubscribeCandlesResponse(tracking_id=tracking_id, candles_subscriptions=tuple(items))

    def _order_books(
        self, request: Any, entries: list[Any], tracking_id: str
    ) -> m.SubscribeOrderBookResponse:
        items = [
            m.OrderBookSubscription(
                depth=sub.depth if sub else 0,
                order_book_type=sub.order_book_type if sub else m.OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED,
                **self._common(instrument, sub, status, action),
            )
            for instrument, sub, status, action in entries
        ]
        return m.SubscribeOrderBookResponse(tracking_id=tracking_id, order_book_subscriptions=tuple(items))

    def _trades(self, request: Any, entries: list[Any], tracking_id: str) -> m.SubscribeTradesResponse:
        items = [
            m.TradeSubscription(
                with_open_interest=sub.with_open_interest if sub else False,
                **self._common(instrument, sub, status, action),
            )
            for instrument, sub, status, action in entries
        ]
        source = request.trade_source if request else m.TradeSourceType.TRADE_SOURCE_UNSPECIFIED
        if source is m.TradeSourceType.TRADE_SOURCE_UNSPECIFIED:
            source = m.TradeSourceType.TRADE_SOURCE_ALL
        return m.SubscribeTradesResponse(
            tracking_id=tracking_id, trade_subscriptions=tuple(items), trade_source=source
        )

    def _info(self, request: Any, entries: list[Any], tracking_id: str) -> m.SubscribeInfoResponse:
        items = [m.InfoSubscription(**self._common(*entry)) for entry in entries]
        return m.SubscribeInfoResponse(tracking_id=tracking_id, info_subscriptions=tuple(items))

    def _last_prices(
        self, request: Any, entries: list[Any], tracking_id: str
    ) -> m.SubscribeLastPriceResponse:
        items = [m.LastPriceSubscription(**self._common(*entry)) for entry in entries]
        return m.SubscribeLastPriceResponse(tracking_id=tracking_id, last_price_subscriptions=tuple(items))


_KIND = {
    m.SubscribeCandlesRequest: "candles",
    m.SubscribeOrderBookRequest: "order_books",
    m.SubscribeTradesRequest: "trades",
    m.SubscribeInfoRequest: "info",
    m.SubscribeLastPriceRequest: "last_prices",
}
