"""The open connections of one simulator, and the fan-out of the market's steps and the broker's events
to them. Runs on the simulator's loop; no thread-safety of its own.

Rules:

* Each connection gets its own :class:`~rxinvest.sim.session.Session` and a fault generator seeded
  with the server's seed and the connection's id (ids count from 1), so a seed replays its faults.
* A step goes to every open connection, then the broker's events of that step; a batch of broker
  events outside a step (an order placed from a test) goes to every connection at once.
* While a step's fan-out runs, an event object is encoded once per dialect however many connections
  send it (:meth:`Fanout.frame`): the market gives one object per book, trade or candle, so a step
  costs one encoding per event, not one per subscriber. Outside a fan-out every frame is encoded anew.
* A closed connection leaves a final :class:`~rxinvest.sim.connection.ConnectionInfo` behind.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection

from rxinvest.sim.broker import Broker
from rxinvest.sim.broker import Event as AccountEvent
from rxinvest.sim.connection import Connection, ConnectionInfo, Host
from rxinvest.sim.fault_injection import FaultInjector, InjectedBook
from rxinvest.sim.faults import Faults
from rxinvest.sim.instruments import InstrumentIndex
from rxinvest.sim.market import Market, StepEvents
from rxinvest.sim.session import Access, PortfolioSnapshots, Session, SessionSettings
from rxinvest.wire import Stream, encode

__all__ = ["Fanout"]

log = logging.getLogger("rxinvest.sim")

#: How many distorted books the ground-truth log keeps (the newest).
INJECTED_BOOKS_KEPT = 100_000


class Fanout:
    """The connections of a server (``connections`` by id, ``closed`` in closing order), and the
    books their sessions distorted on purpose (``injected_books``, oldest first, bounded)."""

    def __init__(
        self,
        market: Market,
        broker: Broker,
        instruments: InstrumentIndex,
        settings: SessionSettings,
        *,
        seed: int,
        emit_defaults: bool,
    ) -> None:
        self.connections: dict[int, Connection] = {}
        self.closed: list[ConnectionInfo] = []
        self.injected_books: deque[InjectedBook] = deque(maxlen=INJECTED_BOOKS_KEPT)
        self._market = market
        self._broker = broker
        self._instruments = instruments
        self._settings = settings
        self._seed = seed
        self._emit_defaults = emit_defaults
        self._ids = itertools.count(1)
        self._frames: dict[tuple[int, str], tuple[Any, str]] = {}  # (id, dialect) -> (event, frame)
        self._sharing = False  # inside a fan-out, where frames are shared

    async def serve(
        self,
        ws: ServerConnection,
        stream: Stream,
        *,
        dialect: str,
        access: Access,
        faults: Faults,
        host: Host,
        ping_delay: float,
    ) -> None:
        """Serve a client who passed the handshake, until its socket closes."""
        connection_id, opened = next(self._ids), time.monotonic()
        rng = random.Random(f"{self._seed}/faults/{connection_id}")
        session = Session(
            stream,
            access=access,
            stream_id=str(uuid.uuid4()),
            market=self._market,
            broker=self._broker,
            instruments=self._instruments,
            settings=self._settings,
            faults=faults,
            rng=rng,
            opened=opened,
            book_log=self.injected_books,
        )
        connection = Connection(
            connection_id,
            ws,
            session,
            dialect=dialect,
            injector=FaultInjector(faults, rng),
            host=host,
            ping_delay=ping_delay,
            opened=opened,
        )
        self.connections[connection_id] = connection
        log.info("connection %d: %s, %s dialect, %s access", connection_id, stream.value, dialect, access)
        try:
            await connection.run()
        finally:
            del self.connections[connection_id]
            self.closed.append(connection.info())

    def step(self, events: StepEvents, account_events: Sequence[AccountEvent], now: float) -> None:
        """Deliver one step: its market ``events``, then its ``account_events`` (``now``: monotonic)."""
        self._sharing = True
        try:
            for connection in list(self.connections.values()):
                connection.on_step(events, now)
            self.account_events(account_events)
        finally:
            self._sharing = False
            self._frames.clear()

    def account_events(self, events: Sequence[AccountEvent]) -> None:
        """Deliver a batch of the broker's events to the account streams."""
        if events:
            portfolios = PortfolioSnapshots(self._market, self._broker)
            for connection in list(self.connections.values()):
                connection.on_account_events(events, portfolios)

    def frame(self, event: Any, dialect: str) -> str:
        """``event`` encoded in ``dialect``: during a fan-out, once however many clients get it.

        The cache holds the event itself: keyed by ``id()``, an entry must keep its object alive, or
        a new object at the same address would be sent the old frame.
        """
        if not self._sharing:
            return encode(event, dialect=dialect, include_defaults=self._emit_defaults)
        key = (id(event), dialect)
        hit = self._frames.get(key)
        if hit is None:
            hit = self._frames[key] = (
                event,
                encode(event, dialect=dialect, include_defaults=self._emit_defaults),
            )
        return hit[1]
