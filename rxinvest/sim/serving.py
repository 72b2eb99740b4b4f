"""``serve()``: a simulator for the duration of a ``with`` block, every option listed and explained.

It takes exactly :class:`~rxinvest.sim.server.Simulator`'s options (a test holds the two signatures
equal), so that editors and ``help()`` show them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime

from rxinvest.sim.broker import AccountSeed
from rxinvest.sim.faults import Faults
from rxinvest.sim.instruments import CATALOGUE, Instrument
from rxinvest.sim.server import Simulator

__all__ = ["serve"]

_NO_FAULTS = Faults()


@contextlib.contextmanager
def serve(
    *,
    seed: int = 1,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    readonly_token: str | None = None,
    scenario: str = "normal",
    speed: float = 1.0,
    step: float = 0.1,
    start: datetime | None = None,
    manual: bool = False,
    trader: bool = True,
    ping_delay: float = 120.0,
    min_ping_delay: float = 5.0,
    idle_timeout: float | None = 120.0,
    max_subscriptions: int = 300,
    max_requests_per_minute: int = 100,
    faults: Faults = _NO_FAULTS,
    emit_defaults: bool = True,
    instruments: Sequence[Instrument] = CATALOGUE,
    accounts: Sequence[AccountSeed] | None = None,
    timeout: float = 10.0,
) -> Iterator[Simulator]:
    """Run a :class:`Simulator` for the duration of a ``with`` block.

    * ``seed``: the market, the accounts' traders and the faults' draws; a seed replays them.
    * ``host``, ``port``: where to listen: loopback only; port 0 is any free port (``sim.port``).
    * ``token``, ``readonly_token``: the full-access and the market-data-only token (visible ASCII,
      no spaces, different); random when not given. Give them to restart a simulator under a client.
    * ``scenario``: how the market moves (:data:`~rxinvest.sim.SCENARIOS`: normal, quiet ...).
    * ``speed``, ``step``: simulated seconds per real second, and per market step.
    * ``start``: the simulated time of the first step (an aware datetime; default: now).
    * ``manual``: no market clock: the market moves only on :meth:`Simulator.advance`.
    * ``trader``: each account's seeded automatic trader places and cancels orders.
    * ``ping_delay``: seconds between server pings, until a client asks for another interval;
      ``min_ping_delay`` the least interval a client may ask for (the proxy's floor is 5 s).
    * ``idle_timeout``: seconds a MarketDataStream may stay without subscriptions (None: forever).
    * ``max_subscriptions``, ``max_requests_per_minute``: the proxy's limits per stream.
    * ``faults``: the :class:`~rxinvest.sim.Faults` of every connection (see also
      :meth:`Simulator.fault_next` and :meth:`Simulator.set_connection_faults`).
    * ``emit_defaults``: frames carry fields at their default values too.
    * ``instruments``, ``accounts``: the catalogue, and the accounts' seeds (default: two accounts).
    * ``timeout``: seconds any call into the simulator may wait for it.

    >>> with serve(seed=7, manual=True) as sim:      # doctest: +SKIP
    ...     sim.base_url, sim.instruments[0].ticker
    ('ws://127.0.0.1:54321/ws/', 'SBER')
    """
    options = dict(locals())  # exactly the parameters above, and a test holds them equal to Simulator's
    simulator = Simulator(**options)
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()
