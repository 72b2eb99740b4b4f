"""What the simulator sends has the shapes of the real API's messages (shared/samples), key by key.

The simulator encodes with rxinvest.wire, so a codec bug could hide on both ends; these tests compare
its frames with the documented examples instead: every key path of a sample must appear in the
simulator's frame of the same kind, with a JSON value of the same type.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rxinvest import model as m
from rxinvest.sim import Simulator, serve
from tests.sim.wsclient import frames, open_stream, send

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples"
if not SAMPLES.is_dir():
    pytest.skip(f"sample messages not found at {SAMPLES}", allow_module_level=True)

SUB = m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE
ETF = "TMOS_TQTF"


def shape(value: Any, prefix: str = "") -> dict[str, str]:
    """Key path -> JSON type; list items are merged under ``[]``."""
    kind = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    out = {prefix: kind[type(value)]} if prefix else {}
    if isinstance(value, dict):
        for key, item in value.items():
            out |= shape(item, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for item in value:
            out |= shape(item, prefix + "[]")
    return out


@pytest.fixture(scope="module")
def captured() -> dict[str, dict[str, str]]:
    """Payload key -> the merged shape of every frame with that key, from one simulator run.

    Merged, because one frame need not show every key: a new order has no trades yet, a position
    change may move money only.
    """
    seen: dict[str, dict[str, str]] = {}

    def keep(frame: str) -> None:
        obj = json.loads(frame)
        seen.setdefault(next(iter(obj)), {}).update(shape(obj))

    start = datetime(2025, 11, 21, 8, 0, tzinfo=UTC)  # fixed: a run must not depend on the wall clock
    with serve(seed=4, manual=True, min_ping_delay=0.05, start=start) as sim:
        market_data(sim, keep)
        accounts(sim, keep)
    return seen


def market_data(sim: Simulator, keep: Any) -> None:
    with open_stream(sim, "MarketDataStream") as ws:
        send(ws, m.PingDelaySettings(ping_delay_ms=100))
        send(
            ws,
            m.SubscribeCandlesRequest(
                subscription_action=SUB,
                instruments=(
                    m.CandleInstrument(
                        instrument_id="GAZP_TQBR",
                        interval=m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE,
                    ),
                ),
            ),
        )
        send(
            ws,
            m.SubscribeOrderBookRequest(
                subscription_action=SUB,
                instruments=(m.OrderBookInstrument(instrument_id="GAZP_TQBR", depth=10),),
            ),
        )
        for request in (m.SubscribeTradesRequest, m.SubscribeInfoRequest, m.SubscribeLastPriceRequest):
            item = {
                m.SubscribeTradesRequest: m.TradeInstrument,
                m.SubscribeInfoRequest: m.InfoInstrument,
                m.SubscribeLastPriceRequest: m.LastPriceInstrument,
            }[request]
            send(ws, request(subscription_action=SUB, instruments=(item(instrument_id="GAZP_TQBR"),)))
        for frame in frames(ws, timeout=0.5):  # fmt: skip
            keep(frame)
        sim.advance(700)  # past a minute boundary: closed candles too
        for frame in frames(ws, timeout=1.0):
            keep(frame)


def accounts(sim: Simulator, keep: Any) -> None:
    account = sim.accounts[0]
    requests = {
        "OrderStateStream": m.OrderStateStreamRequest(accounts=(account,)),
        "TradesStream": m.TradesStreamRequest(accounts=(account,)),
        "PositionsStream": m.PositionsStreamRequest(accounts=(account,)),
        "PortfolioStream": m.PortfolioStreamRequest(accounts=(account,)),
    }
    connections = {stream: open_stream(sim, stream) for stream in requests}
    sockets = {stream: cm.__enter__() for stream, cm in connections.items()}
    try:
        for stream, ws in sockets.items():
            send(ws, requests[stream])
            keep(ws.recv(timeout=5))
        sim.place_order(account, ETF, m.OrderDirection.ORDER_DIRECTION_BUY, 5)
        sim.advance(30)
        # Read until the fill has shown on each stream (bounded), not for a fixed half second: on a
        # loaded machine the frames of the fill can take longer than that to arrive.
        filled = {
            "OrderStateStream": lambda frame: '"trades":[{' in frame.replace(" ", ""),
            "TradesStream": lambda frame: frame.startswith('{"orderTrades"'),
        }
        for stream, ws in sockets.items():
            done = filled.get(stream)
            deadline = time.monotonic() + (10.0 if done else 0.5)
            while time.monotonic() < deadline:
                got = list(frames(ws, timeout=min(0.5, deadline - time.monotonic())))
                for frame in got:
                    keep(frame)
                if done is None or any(done(frame) for frame in got):
                    break
    finally:
        for cm in connections.values():
            cm.__exit__(None, None, None)


SAMPLE_FILES = sorted(p for p in SAMPLES.rglob("*.json") if "request" not in p.name)


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_frames_carry_every_key_of_the_sample(path: Path, captured: dict[str, dict[str, str]]) -> None:
    sample = json.loads(path.read_text())
    key = next(iter(sample))
    assert key in captured, f"the simulator never sent a {key!r} frame"
    expected, actual = shape(sample), captured[key]
    missing = sorted(set(expected) - set(actual))
    assert not missing, f"{key}: keys the API sends but the simulator does not: {missing}"
    mistyped = {k: (expected[k], actual[k]) for k in expected if expected[k] != actual[k]}
    assert not mistyped, f"{key}: JSON types differ (sample, simulator): {mistyped}"
