"""What the burst benchmarks share: the instruments and the subscription request."""

from __future__ import annotations

from rxinvest import model as m
from rxinvest import wire

IDS = ("SBER_TQBR", "GAZP_TQBR", "LKOH_TQBR", "VTBR_TQBR")
WARMUP = 200  # frames read before the clock starts: set-up and answers are not part of a burst
_SUBSCRIBE = m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE


def request(kind: str) -> str:
    """The MarketDataStream frame that subscribes depth-20 ``books`` or ``trades`` of :data:`IDS`."""
    if kind == "books":
        books = tuple(m.OrderBookInstrument(instrument_id=i, depth=20) for i in IDS)
        return wire.encode(m.SubscribeOrderBookRequest(subscription_action=_SUBSCRIBE, instruments=books))
    trades = tuple(m.TradeInstrument(instrument_id=i) for i in IDS)
    return wire.encode(m.SubscribeTradesRequest(subscription_action=_SUBSCRIBE, instruments=trades))
