"""Cutting a simulator's market-data connection in a test that opens several streams at once."""

from __future__ import annotations

from rxinvest.sim import Faults, Simulator
from rxinvest.wire import Stream


def cut_market_data(sim: Simulator, after: int) -> None:
    """Drop the simulator's open MarketDataStream connection ``after`` frames from now (waiting up
    to 10 s for it to open). ``fault_next`` would give the fault to whichever connection the
    simulator accepts next, an account stream's as often as not when the test opens four at once."""
    sim.wait_for(lambda s: any(c.stream is Stream.MARKET_DATA for c in s.connections()), 10)
    market = next(c for c in sim.connections() if c.stream is Stream.MARKET_DATA)
    sim.set_connection_faults(market.id, Faults(drop_after=after))
