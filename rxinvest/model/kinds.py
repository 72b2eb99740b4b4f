"""The vocabulary of MarketDataStream subscriptions: one :class:`Kind` per subscription kind, and one
table row (:class:`KindSpec`) holding every per-kind fact of the contract.

Rules of this module:

* A kind's name is written here and nowhere else: code elsewhere says ``Kind.ORDER_BOOKS``, never
  ``"order_books"`` (``Kind`` is a ``StrEnum``, so the member still compares equal to its text).
* Whatever differs between kinds (request, response and entry classes, which parameters ride on the
  instrument and which on the whole request, what tells two subscriptions apart, what routes an
  event back) is a column of :data:`SPECS`. The client's session (``protocol/``) and the simulated
  proxy (``sim/``) both read the table; neither branches on a kind.
* Parameter names are the proto field names, on both sides of the wire.
"""

from __future__ import annotations

import enum
import functools
import typing
from datetime import timedelta

import attrs

from rxinvest.errors import ConfigurationError
from rxinvest.model import market_data as md
from rxinvest.model.enums import SubscriptionInterval

__all__ = [
    "BOOK_DEPTHS",
    "CANDLE_INTERVALS",
    "EVENT_KINDS",
    "INTERVAL_LENGTH",
    "REQUEST_KINDS",
    "RESPONSE_KINDS",
    "SPECS",
    "Kind",
    "KindSpec",
    "ResponseShape",
]

#: The order-book depths the API serves (levels a side).
BOOK_DEPTHS: tuple[int, ...] = (1, 10, 20, 30, 40, 50)
#: Every interval a candle subscription may ask for (all but UNSPECIFIED).
CANDLE_INTERVALS: tuple[SubscriptionInterval, ...] = tuple(
    i for i in SubscriptionInterval if i is not SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED
)
_I = SubscriptionInterval
#: The length of each fixed candle interval; months (and weeks' alignment) follow the calendar.
INTERVAL_LENGTH: dict[SubscriptionInterval, timedelta] = {
    _I.SUBSCRIPTION_INTERVAL_ONE_MINUTE: timedelta(minutes=1),
    _I.SUBSCRIPTION_INTERVAL_2_MIN: timedelta(minutes=2),
    _I.SUBSCRIPTION_INTERVAL_3_MIN: timedelta(minutes=3),
    _I.SUBSCRIPTION_INTERVAL_FIVE_MINUTES: timedelta(minutes=5),
    _I.SUBSCRIPTION_INTERVAL_10_MIN: timedelta(minutes=10),
    _I.SUBSCRIPTION_INTERVAL_FIFTEEN_MINUTES: timedelta(minutes=15),
    _I.SUBSCRIPTION_INTERVAL_30_MIN: timedelta(minutes=30),
    _I.SUBSCRIPTION_INTERVAL_ONE_HOUR: timedelta(hours=1),
    _I.SUBSCRIPTION_INTERVAL_2_HOUR: timedelta(hours=2),
    _I.SUBSCRIPTION_INTERVAL_4_HOUR: timedelta(hours=4),
    _I.SUBSCRIPTION_INTERVAL_ONE_DAY: timedelta(days=1),
    _I.SUBSCRIPTION_INTERVAL_WEEK: timedelta(weeks=1),
}


class Kind(enum.StrEnum):
    """A kind of MarketDataStream subscription; the value is the name rxinvest uses for it."""

    CANDLES = "candles"
    ORDER_BOOKS = "order_books"
    TRADES = "trades"
    INFO = "info"
    LAST_PRICES = "last_prices"

    @property
    def spec(self) -> KindSpec:
        """This kind's row of :data:`SPECS`."""
        return SPECS[self]

    @classmethod
    def parse(cls, name: str) -> Kind:
        """``Kind(name)`` with a :class:`~rxinvest.errors.ConfigurationError` naming the valid kinds."""
        try:
            return cls(name)
        except ValueError:
            valid = ", ".join(k.value for k in cls)
            message = f"unknown subscription kind {name!r}; expected one of: {valid}"
            raise ConfigurationError(message) from None


@attrs.frozen(kw_only=True)
class KindSpec:
    """Everything the contract says about one kind of subscription.

    * ``request`` / ``response``: the ``Subscribe*Request`` and ``Subscribe*Response`` classes;
      ``entries`` names the response attribute holding one entry per requested instrument, in request
      order; ``instrument`` is the request's per-instrument class.
    * ``instrument_params``: fields of ``instrument`` besides ``instrument_id`` (each instrument
      may differ); ``request_params``: fields of ``request`` that hold for every instrument of it.
    * ``identity``: the parameters that, with the instrument, tell two subscriptions of this kind
      apart on the server (subscribing again with equal identity is idempotent).
    * ``events``: the market events a subscription brings; ``route`` the attribute of those events
      (besides ``instrument_uid``) that says which subscription they belong to, or None.
    * ``counted``: whether it counts against the per-stream subscription limit (300).
    """

    kind: Kind
    request: type
    response: type
    entries: str
    instrument: type
    events: tuple[type, ...]
    instrument_params: tuple[str, ...] = ()
    request_params: tuple[str, ...] = ()
    identity: tuple[str, ...] = ()
    route: str | None = None
    counted: bool = False

    @property
    def parameters(self) -> tuple[str, ...]:
        """Every parameter a subscription of this kind is made with."""
        return self.instrument_params + self.request_params

    @property
    def shape(self) -> ResponseShape:
        """What this kind's ``response`` carries (see :class:`ResponseShape`)."""
        return _shape(self)


@attrs.frozen
class ResponseShape:
    """A ``Subscribe*Response``'s make-up: ``entry`` is the class of its entries; ``entry_params``
    the subscription parameters each entry shows; ``response_params`` the request-level parameters
    the response itself shows (``trade_source``)."""

    entry: type
    entry_params: tuple[str, ...]
    response_params: tuple[str, ...]


@functools.cache
def _shape(spec: KindSpec) -> ResponseShape:
    hints = typing.get_type_hints(spec.response)
    (entry, _) = typing.get_args(hints[spec.entries])  # tuple[XSubscription, ...]
    fields = attrs.fields_dict(entry)
    return ResponseShape(
        entry,
        tuple(name for name in spec.parameters if name in fields),
        tuple(name for name in spec.request_params if name in hints),
    )


SPECS: dict[Kind, KindSpec] = {
    Kind.CANDLES: KindSpec(
        kind=Kind.CANDLES,
        request=md.SubscribeCandlesRequest,
        response=md.SubscribeCandlesResponse,
        entries="candles_subscriptions",
        instrument=md.CandleInstrument,
        instrument_params=("interval",),
        request_params=("waiting_close", "candle_source_type"),
        identity=("interval",),
        events=(md.Candle,),
        route="interval",
        counted=True,
    ),
    Kind.ORDER_BOOKS: KindSpec(
        kind=Kind.ORDER_BOOKS,
        request=md.SubscribeOrderBookRequest,
        response=md.SubscribeOrderBookResponse,
        entries="order_book_subscriptions",
        instrument=md.OrderBookInstrument,
        instrument_params=("depth", "order_book_type"),
        identity=("depth", "order_book_type"),
        events=(md.OrderBook,),
        route="depth",
        counted=True,
    ),
    Kind.TRADES: KindSpec(
        kind=Kind.TRADES,
        request=md.SubscribeTradesRequest,
        response=md.SubscribeTradesResponse,
        entries="trade_subscriptions",
        instrument=md.TradeInstrument,
        request_params=("trade_source", "with_open_interest"),
        events=(md.Trade, md.OpenInterest),
        counted=True,
    ),
    Kind.INFO: KindSpec(
        kind=Kind.INFO,
        request=md.SubscribeInfoRequest,
        response=md.SubscribeInfoResponse,
        entries="info_subscriptions",
        instrument=md.InfoInstrument,
        events=(md.TradingStatus,),
    ),
    Kind.LAST_PRICES: KindSpec(
        kind=Kind.LAST_PRICES,
        request=md.SubscribeLastPriceRequest,
        response=md.SubscribeLastPriceResponse,
        entries="last_price_subscriptions",
        instrument=md.LastPriceInstrument,
        events=(md.LastPrice,),
    ),
}

#: The kind of every market event, by class (``OpenInterest`` rides on trade subscriptions).
EVENT_KINDS: dict[type, Kind] = {cls: spec.kind for spec in SPECS.values() for cls in spec.events}
#: The kind of every subscription request and response class.
REQUEST_KINDS: dict[type, Kind] = {spec.request: spec.kind for spec in SPECS.values()}
RESPONSE_KINDS: dict[type, Kind] = {spec.response: spec.kind for spec in SPECS.values()}
