"""Cost per message of ``rxinvest.wire.decode``, against ``orjson.loads`` (the floor) and a naive decoder.

Run: ``.venv/bin/python benchmarks/decode.py [--rounds 15]``. Every candidate decodes the same frames,
interleaved round by round, so machine drift hits them alike; the figures are medians over rounds of
the mean cost per message, and the ratios are taken between those medians.

Frames: a sequence of depth-20 order books from a random walk (consecutive snapshots share most
levels, as on the real stream), and sequences of trades, candles, last prices and order states.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from rxinvest import model as m
from rxinvest import wire

UID = "962e2a95-02a9-4171-abd7-aa198dbe643a"


def q(value: Decimal) -> dict[str, Any]:
    units = int(value)
    return {"units": str(units), "nano": int((value - units) * 10**9)}


def ts(rng: random.Random) -> str:
    return f"2025-11-21T10:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}Z"


def book_frames(n: int, rng: random.Random) -> list[bytes]:
    """Depth-20 books around a random-walk mid; a level keeps its size until the walk touches it."""
    tick, mid, frames = Decimal("0.01"), 25000, []
    size: dict[int, int] = {}

    def level(ticks: int) -> dict[str, Any]:
        qty = size.setdefault(ticks, rng.randrange(1, 500))
        return {"price": q(ticks * tick), "quantity": str(qty)}

    for _ in range(n):
        mid += rng.choice((-1, 0, 0, 0, 1))
        for _ in range(4):  # a few levels change size per snapshot
            size[mid + rng.choice((-1, 1)) * rng.randrange(1, 21)] = rng.randrange(1, 500)
        book = {
            "figi": "BBG004730RP0",
            "depth": 20,
            "isConsistent": True,
            "bids": [level(mid - 1 - i) for i in range(20)],
            "asks": [level(mid + 1 + i) for i in range(20)],
            "time": ts(rng),
            "limitUp": q(Decimal("275.00")),
            "limitDown": q(Decimal("225.00")),
            "instrumentUid": UID,
            "orderBookType": "ORDERBOOK_TYPE_EXCHANGE",
            "ticker": "SBER",
            "classCode": "TQBR",
        }
        frames.append(orjson.dumps({"orderbook": book}))
    return frames


def price(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(24900, 25100)) / 100


def trade_frames(n: int, rng: random.Random) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "trade": {
                    "figi": "BBG004730RP0",
                    "direction": rng.choice(("TRADE_DIRECTION_BUY", "TRADE_DIRECTION_SELL")),
                    "price": q(price(rng)),
                    "quantity": str(rng.randrange(1, 1000)),
                    "time": ts(rng),
                    "instrumentUid": UID,
                    "tradeSource": "TRADE_SOURCE_EXCHANGE",
                    "ticker": "SBER",
                    "classCode": "TQBR",
                }
            }
        )
        for _ in range(n)
    ]


def candle_frames(n: int, rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(n):
        o, c = price(rng), price(rng)
        out.append(
            orjson.dumps(
                {
                    "candle": {
                        "figi": "BBG004730RP0",
                        "interval": "SUBSCRIPTION_INTERVAL_ONE_MINUTE",
                        "open": q(o),
                        "high": q(max(o, c) + Decimal("0.05")),
                        "low": q(min(o, c) - Decimal("0.05")),
                        "close": q(c),
                        "volume": str(rng.randrange(10**5)),
                        "time": "2025-11-21T10:15:00Z",
                        "lastTradeTs": ts(rng),
                        "instrumentUid": UID,
                        "ticker": "SBER",
                        "classCode": "TQBR",
                        "volumeBuy": str(rng.randrange(10**4)),
                        "volumeSell": str(rng.randrange(10**4)),
                        "candleSourceType": "CANDLE_SOURCE_EXCHANGE",
                    }
                }
            )
        )
    return out


def last_price_frames(n: int, rng: random.Random) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "lastPrice": {
                    "figi": "BBG004730RP0",
                    "price": q(price(rng)),
                    "time": ts(rng),
                    "ticker": "SBER",
                    "classCode": "TQBR",
                    "instrumentUid": UID,
                    "lastPriceType": "LAST_PRICE_EXCHANGE",
                }
            }
        )
        for _ in range(n)
    ]


def order_state_frames(n: int, rng: random.Random) -> list[bytes]:
    sample = json.load(open_sample("OrderStateStream/order_state.json"))["orderState"]
    out = []
    for i in range(n):
        event = dict(sample, orderId=str(49478317886 + i), createdAt=ts(rng))
        event["orderPrice"] = dict(q(price(rng)), currency="RUB")
        out.append(orjson.dumps({"orderState": event}))
    return out


def open_sample(path: str) -> Any:
    from pathlib import Path

    here = Path(__file__).resolve().parent.parent
    for base in (here.parent / "shared" / "samples", here / "shared" / "samples"):
        if (base / path).exists():
            return open(base / path)
    raise SystemExit(f"sample {path} not found next to the checkout (../shared/samples)")


# --- the naive decoder: json.loads, then straightforward attrs + Decimal construction ------------------


def nq(d: dict[str, Any] | None) -> Decimal | None:
    if d is None:
        return None
    return Decimal(int(d.get("units", "0"))) + Decimal(d.get("nano", 0)) / Decimal(10**9)


def nt(s: str | None) -> datetime | None:
    return None if s is None else datetime.fromisoformat(s)


def nm(d: dict[str, Any] | None) -> m.Money | None:
    return None if d is None else m.Money(nq(d) or Decimal(0), d.get("currency", ""))


def naive_book(d: dict[str, Any]) -> m.OrderBook:
    return m.OrderBook(
        figi=d.get("figi", ""),
        depth=d.get("depth", 0),
        is_consistent=d.get("isConsistent", False),
        bids=tuple(m.Order(price=nq(x["price"]), quantity=int(x["quantity"])) for x in d.get("bids", [])),
        asks=tuple(m.Order(price=nq(x["price"]), quantity=int(x["quantity"])) for x in d.get("asks", [])),
        time=nt(d.get("time")),
        limit_up=nq(d.get("limitUp")),
        limit_down=nq(d.get("limitDown")),
        instrument_uid=d.get("instrumentUid", ""),
        order_book_type=m.OrderBookType[d.get("orderBookType", "ORDERBOOK_TYPE_UNSPECIFIED")],
        ticker=d.get("ticker", ""),
        class_code=d.get("classCode", ""),
    )


def naive_trade(d: dict[str, Any]) -> m.Trade:
    return m.Trade(
        figi=d.get("figi", ""),
        direction=m.TradeDirection[d.get("direction", "TRADE_DIRECTION_UNSPECIFIED")],
        price=nq(d.get("price")),
        quantity=int(d.get("quantity", "0")),
        time=nt(d.get("time")),
        instrument_uid=d.get("instrumentUid", ""),
        trade_source=m.TradeSourceType[d.get("tradeSource", "TRADE_SOURCE_UNSPECIFIED")],
        ticker=d.get("ticker", ""),
        class_code=d.get("classCode", ""),
    )


def naive_candle(d: dict[str, Any]) -> m.Candle:
    return m.Candle(
        figi=d.get("figi", ""),
        interval=m.SubscriptionInterval[d.get("interval", "SUBSCRIPTION_INTERVAL_UNSPECIFIED")],
        open=nq(d.get("open")),
        high=nq(d.get("high")),
        low=nq(d.get("low")),
        close=nq(d.get("close")),
        volume=int(d.get("volume", "0")),
        time=nt(d.get("time")),
        last_trade_ts=nt(d.get("lastTradeTs")),
        instrument_uid=d.get("instrumentUid", ""),
        ticker=d.get("ticker", ""),
        class_code=d.get("classCode", ""),
        volume_buy=int(d.get("volumeBuy", "0")),
        volume_sell=int(d.get("volumeSell", "0")),
        candle_source_type=m.CandleSource[d.get("candleSourceType", "CANDLE_SOURCE_UNSPECIFIED")],
    )


def naive_last_price(d: dict[str, Any]) -> m.LastPrice:
    return m.LastPrice(
        figi=d.get("figi", ""),
        price=nq(d.get("price")),
        time=nt(d.get("time")),
        ticker=d.get("ticker", ""),
        class_code=d.get("classCode", ""),
        instrument_uid=d.get("instrumentUid", ""),
        last_price_type=m.LastPriceType[d.get("lastPriceType", "LAST_PRICE_UNSPECIFIED")],
    )


def naive_order_state(d: dict[str, Any]) -> m.OrderState:
    return m.OrderState(
        order_id=d.get("orderId", ""),
        order_request_id=d.get("orderRequestId"),
        client_code=d.get("clientCode", ""),
        created_at=nt(d.get("createdAt")),
        execution_report_status=m.OrderExecutionReportStatus[d["executionReportStatus"]],
        status_info=m.StatusCauseInfo[d["statusInfo"]] if "statusInfo" in d else None,
        ticker=d.get("ticker", ""),
        class_code=d.get("classCode", ""),
        lot_size=d.get("lotSize", 0),
        direction=m.OrderDirection[d["direction"]],
        time_in_force=m.TimeInForceType[d["timeInForce"]],
        order_type=m.OrderType[d["orderType"]],
        account_id=d.get("accountId", ""),
        initial_order_price=nm(d.get("initialOrderPrice")),
        order_price=nm(d.get("orderPrice")),
        amount=nm(d.get("amount")),
        executed_order_price=nm(d.get("executedOrderPrice")),
        currency=d.get("currency", ""),
        lots_requested=int(d.get("lotsRequested", "0")),
        lots_executed=int(d.get("lotsExecuted", "0")),
        lots_left=int(d.get("lotsLeft", "0")),
        lots_cancelled=int(d.get("lotsCancelled", "0")),
        marker=m.MarkerType[d["marker"]] if "marker" in d else None,
        trades=tuple(
            m.OrderTrade(
                date_time=nt(t.get("dateTime")),
                price=nq(t.get("price")),
                quantity=int(t.get("quantity", "0")),
                trade_id=t.get("tradeId", ""),
            )
            for t in d.get("trades", [])
        ),
        completion_time=nt(d.get("completionTime")),
        exchange=d.get("exchange", ""),
        instrument_uid=d.get("instrumentUid", ""),
    )


NAIVE = {
    "orderbook": naive_book,
    "trade": naive_trade,
    "candle": naive_candle,
    "lastPrice": naive_last_price,
    "orderState": naive_order_state,
}


def naive_decode(frame: bytes) -> Any:
    obj = json.loads(frame)
    ((key, body),) = obj.items()
    return NAIVE[key](body)


def per_message_ns(fn: Callable[[bytes], Any], frames: list[bytes], repeat: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(repeat):
        for frame in frames:
            fn(frame)
    return (time.perf_counter_ns() - start) / (repeat * len(frames))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--messages", type=int, default=200, help="distinct frames per kind")
    args = parser.parse_args()
    rng = random.Random(7)
    sets = {
        "order book d20": ("MarketDataStream", book_frames(args.messages, rng)),
        "trade": ("MarketDataStream", trade_frames(args.messages, rng)),
        "candle": ("MarketDataStream", candle_frames(args.messages, rng)),
        "last price": ("MarketDataStream", last_price_frames(args.messages, rng)),
        "order state": ("OrderStateStream", order_state_frames(args.messages, rng)),
    }
    goals = {"order book d20": 2.0}
    print(
        f"{'message':<15} {'bytes':>6} {'orjson µs':>10} {'rxinvest µs':>12} {'x orjson':>9} "
        f"{'goal':>5} {'naive µs':>9} {'naive/rx':>9} {'no-intern µs':>13} {'intern gain':>12}"
    )
    for name, (stream, frames) in sets.items():
        decode = lambda f, s=stream: wire.decode(f, stream=s)  # noqa: E731

        def cold(f: bytes, s: str = stream) -> Any:
            wire.clear_caches()
            return wire.decode(f, stream=s)

        def clear_only(f: bytes) -> None:
            wire.clear_caches()

        assert all(decode(f) == naive_decode(f) for f in frames), f"{name}: decoders disagree"
        repeat = max(1, 2000 // len(frames))
        samples: dict[str, list[float]] = {k: [] for k in ("orjson", "rx", "naive", "cold", "clear")}
        for _ in range(args.rounds):
            samples["orjson"].append(per_message_ns(orjson.loads, frames, repeat))
            samples["rx"].append(per_message_ns(decode, frames, repeat))
            samples["naive"].append(per_message_ns(naive_decode, frames, max(1, repeat // 4)))
            samples["cold"].append(per_message_ns(cold, frames, repeat))
            samples["clear"].append(per_message_ns(clear_only, frames, repeat))
        med = {k: statistics.median(v) / 1000 for k, v in samples.items()}
        no_intern = med["cold"] - med["clear"]
        print(
            f"{name:<15} {statistics.mean(map(len, frames)):>6.0f} {med['orjson']:>10.2f} {med['rx']:>12.2f} "
            f"{med['rx'] / med['orjson']:>8.2f}x {goals.get(name, 3.0):>4.1f}x {med['naive']:>9.2f} "
            f"{med['naive'] / med['rx']:>8.1f}x {no_intern:>13.2f} {no_intern / med['rx']:>11.2f}x"
        )
    print("\ngoals: book within 2x of orjson.loads, small messages within 3x, and >= 4x faster than naive")


if __name__ == "__main__":
    main()
