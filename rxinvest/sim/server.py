"""The embedded simulator: a real WebSocket server speaking the T-Invest proxy's protocol on loopback.

``with rxinvest.sim.serve(seed=1) as sim:`` starts it on ``127.0.0.1`` (a free port by default) in a
background thread with its own asyncio event loop, and stops it on exit. It serves the six stream
endpoints at ``/ws/tinkoff.public.invest.api.contract.v1.<Service>/<Method>`` and frames everything
with :mod:`rxinvest.wire`, in the dialect the client offers (``json-proto``, else ``json``), with
fields at their default values too unless ``emit_defaults=False`` (clients must read both).

The market (:mod:`rxinvest.sim.market`) and the accounts (:mod:`rxinvest.sim.broker`) move in fixed
steps of simulated time; the loop paces the steps to real time times ``speed``, or not at all with
``manual=True`` (tests call :meth:`Simulator.advance`). Methods of :class:`Simulator` may be called
from any thread; they run on the simulator's loop and wait for it.

This module is the shell: the options, the websockets server, the market's clock and the
thread-safe controls, on the loop of a :mod:`~rxinvest.sim.loop` thread. The protocol's rules live
where they are decided: tokens, paths and subprotocols in :mod:`~rxinvest.sim.handshake`; what one
stream does in :mod:`~rxinvest.sim.session` (sans-I/O), run for each client by a
:mod:`~rxinvest.sim.connection` and reached by the :mod:`~rxinvest.sim.fanout`; faults as
:mod:`~rxinvest.sim.fault_injection` decides; burst mode in :mod:`~rxinvest.sim.burst`. Bad options
are a :class:`~rxinvest.errors.ConfigurationError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from rxinvest import model as m
from rxinvest.errors import ConfigurationError
from rxinvest.sim import handshake
from rxinvest.sim.broker import AccountSeed, Broker, default_accounts
from rxinvest.sim.broker import Event as AccountEvent
from rxinvest.sim.burst import BurstFrames
from rxinvest.sim.connection import Connection, ConnectionInfo
from rxinvest.sim.fanout import Fanout
from rxinvest.sim.fault_injection import InjectedBook
from rxinvest.sim.faults import Faults
from rxinvest.sim.instruments import CATALOGUE, Instrument, InstrumentIndex
from rxinvest.sim.loop import LoopThread
from rxinvest.sim.market import Market
from rxinvest.sim.quote import Quote
from rxinvest.sim.rest import RestControls, RestService
from rxinvest.sim.session import SessionSettings
from rxinvest.wire import Dialect, Stream

__all__ = ["ConnectionInfo", "Simulator"]

_T = TypeVar("_T")

_NO_FAULTS = Faults()


class Simulator(RestControls):
    """A running simulator: its address, tokens, instruments, accounts, and controls.

    Create it with :func:`~rxinvest.sim.serve`, which lists and explains the options (``Simulator``
    takes the same, for a simulator started and stopped by hand). Every public method is thread-safe:
    it runs on the simulator's event loop and waits for it (``timeout`` seconds at most). An option
    that cannot work (an unknown scenario, a host off loopback, a port in use, a value of the wrong
    type ...) is a ConfigurationError. The unary methods are served over REST at :attr:`rest_url`.
    """

    def __init__(
        self,
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
    ) -> None:
        handshake.check_address(host, port)
        for name, value in (("speed", speed), ("step", step)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number, not {value!r}")
        if not isinstance(faults, Faults):
            raise ConfigurationError(f"faults must be a Faults value, not {faults!r}")
        self.seed, self.host, self.port = seed, host, port
        self.speed, self.step_seconds, self.manual, self.trader = speed, step, manual, trader
        self.ping_delay, self.min_ping_delay, self.idle_timeout = ping_delay, min_ping_delay, idle_timeout
        self.max_subscriptions, self.max_requests_per_minute = max_subscriptions, max_requests_per_minute
        self.timeout, self.emit_defaults = timeout, emit_defaults
        self.index = InstrumentIndex(instruments)
        self.instruments: tuple[Instrument, ...] = self.index.instruments
        self._start = start or datetime.now(UTC).replace(microsecond=0)
        self.market = Market(
            self.instruments, seed=seed, start=self._start, step=timedelta(seconds=step), scenario=scenario
        )
        seeds = tuple(accounts) if accounts is not None else default_accounts(self.instruments)
        self.broker = Broker(self.instruments, seeds, seed=seed)
        self.accounts: tuple[str, ...] = self.broker.accounts
        #: A token with full access, and one that may only read market data.
        self.token, self.readonly_token = handshake.issue_tokens(token, readonly_token)
        settings = SessionSettings(max_subscriptions, max_requests_per_minute, min_ping_delay, idle_timeout)
        self._fanout = Fanout(
            self.market, self.broker, self.index, settings, seed=seed, emit_defaults=emit_defaults
        )
        self._bursts = BurstFrames(
            self.index, seed=seed, step=timedelta(seconds=step), emit_defaults=emit_defaults
        )
        self._faults = faults
        self._next_faults: list[Faults] = []
        self._thread = LoopThread(self._main, name="rxinvest-sim")
        self._rest = RestService(self, host, self._call)  # the unary methods over HTTP: sim/rest.py
        self._clock_origin = time.monotonic()

    # --- properties ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The ``ws://host:port/ws/`` prefix: pass it as ``target`` where rxinvest takes a URL."""
        return f"ws://{self.host}:{self.port}/ws/"

    def url(self, stream: str) -> str:
        return self.base_url + Stream.parse(stream).path

    def clock(self) -> datetime:
        """Simulated now: the market's time, advancing between steps at ``speed``."""
        if self.manual:
            return self.market.now
        return self._start + timedelta(seconds=(time.monotonic() - self._clock_origin) * self.speed)

    def __repr__(self) -> str:  # never shows the tokens
        return f"<Simulator {self.base_url} seed={self.seed} instruments={len(self.instruments)}>"

    # --- life cycle ----------------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Serve from now on; a ConfigurationError if the port cannot be had (in use, say)."""
        self._thread.start(self.timeout)
        return self

    def stop(self) -> None:
        self._thread.stop(self.timeout)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _main(self, thread: LoopThread) -> None:
        try:
            server = await ws_serve(
                self._handle,
                self.host,
                self.port,
                process_request=handshake.refuse_unknown_paths,
                select_subprotocol=handshake.select_subprotocol,
                compression=None,
                ping_interval=None,  # the proxy's liveness signal is its JSON ping, not WS pings
                max_size=2**20,
                logger=handshake.LOG,
                server_header=None,
            )
        except OSError as exc:  # the port is taken, most likely: the caller's choice, so a setting error
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ConfigurationError(
                f"cannot listen on {self.host}:{self.port}: {reason} (choose another port, or 0 for any)"
            ) from exc
        self.port = server.sockets[0].getsockname()[1]
        self._rest.start()
        self._clock_origin = time.monotonic()
        market = None if self.manual else asyncio.create_task(self._market_loop())
        thread.ready()
        await thread.stopping.wait()
        await asyncio.to_thread(self._rest.stop, self.timeout)  # off the loop: handlers wait for it
        if market is not None:
            market.cancel()
        for connection in list(self._fanout.connections.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(1001, "simulator stopping"), 1.0)
        server.close()
        await server.wait_closed()

    # --- handshake -----------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        stream = handshake.stream_at(request.path)
        assert stream is not None  # refuse_unknown_paths answered the other paths
        access = handshake.access(request.headers, full_token=self.token, readonly_token=self.readonly_token)
        if access is None:
            await ws.close(4016, "UNAUTHENTICATED: 40003 token missing or invalid")
            return
        faults = self._next_faults.pop(0) if self._next_faults else self._faults
        await self._fanout.serve(
            ws,
            stream,
            dialect=str(ws.subprotocol or Dialect.JSON),
            access=access,
            faults=faults,
            host=self,
            ping_delay=self.ping_delay,
        )

    # --- market and accounts -------------------------------------------------------------------------

    async def _market_loop(self) -> None:
        interval = self.step_seconds / self.speed
        next_step = time.monotonic()
        while True:
            next_step += interval
            await asyncio.sleep(max(0.0, next_step - time.monotonic()))
            self._step()
            if time.monotonic() - next_step > 1.0:  # far behind (a debugger, a slow machine): skip ahead
                next_step = time.monotonic()

    def _step(self) -> None:
        events = self.market.step()
        quotes = self.market.quotes()
        broker_events = self.broker.on_market(quotes, events.time)
        if self.trader:
            broker_events += self.broker.trader_step(quotes, events.time)
        self._fanout.step(events, broker_events, time.monotonic())

    def frame(self, event: Any, dialect: str) -> str:
        """``event`` encoded in ``dialect``: during a step's fan-out, once however many clients get it."""
        return self._fanout.frame(event, dialect)

    def injected_books(self) -> tuple[InjectedBook, ...]:
        """The book snapshots distorted on purpose (``crossed_books``, ``inconsistent_books``), oldest
        first: the newest 100,000. The ground truth of a book-health check."""
        return self._call(lambda: tuple(self._fanout.injected_books))

    def burst_frames(
        self,
        *,
        books: Mapping[str, int] | None = None,
        trades: Iterable[str] = (),
        dialect: str = "json",
        steps: int = 200,
    ) -> list[str]:
        """The frames burst mode sends: ``books`` (instrument id -> depth) and ``trades`` (instrument
        ids) over ``steps`` steps of a private copy of the market, encoded once and kept."""
        return self._bursts.frames(
            start=self.market.now, books=books or {}, trades=trades, dialect=dialect, steps=steps
        )

    # --- thread-safe controls ------------------------------------------------------------------------

    def _call(self, function: Callable[[], _T]) -> _T:
        return self._thread.call(function, self.timeout)

    def advance(self, steps: int = 1) -> datetime:
        """Move the market ``steps`` steps now (any mode); returns the new simulated time."""

        def run() -> datetime:
            for _ in range(steps):
                self._step()
            return self.market.now

        return self._call(run)

    def place_order(
        self,
        account_id: str,
        instrument_id: str,
        direction: m.OrderDirection,
        lots: int,
        *,
        price: Decimal | None = None,
        order_type: m.OrderType | None = None,
        order_request_id: str | None = None,
    ) -> m.OrderState:
        """Place an order as the account's owner would; returns its first state (NEW or REJECTED).

        Fills follow as the market moves; every event reaches the account streams.
        """
        kind = order_type or (
            m.OrderType.ORDER_TYPE_MARKET if price is None else m.OrderType.ORDER_TYPE_LIMIT
        )

        def place() -> list[AccountEvent]:
            instrument = self.index.get(instrument_id)
            quote = self.market.quote(instrument.uid) if instrument else None  # none: rejected
            return self.broker.place_order(
                account_id=account_id,
                instrument_id=instrument_id,
                direction=direction,
                lots=lots,
                order_type=kind,
                price=price,
                order_request_id=order_request_id,
                now=self.clock(),
                quote=quote or Quote(instrument_id, None, None, 0, 0, Decimal(0), tradable=False),
            )

        return next(e for e in self._account_call(place) if isinstance(e, m.OrderState))

    def cancel_order(self, account_id: str, order_id: str) -> list[AccountEvent]:
        """Cancel an active order; returns the events it caused (empty if nothing was cancelled)."""
        return self._account_call(
            lambda: self.broker.cancel_order(account_id=account_id, order_id=order_id, now=self.clock())
        )

    def move_money(self, account_id: str, amount: Decimal, *, kind: str = "transfer") -> list[AccountEvent]:
        """An external movement: money in (``amount`` > 0, e.g. a dividend) or out; returns its events."""
        return self._account_call(
            lambda: self.broker.external(account_id=account_id, amount=amount, now=self.clock(), kind=kind)
        )

    def transfer_securities(self, account_id: str, instrument: str, units: int) -> list[AccountEvent]:
        """Move ``units`` of ``instrument`` (ticker_classcode, figi or uid) in (> 0) or out with no order,
        fill or money (a depository transfer); returns its events, ``[]`` if refused (0, or more out than is
        free). KeyError: an unknown account; ConfigurationError: an unknown instrument, futures, non-int."""
        move = self.broker.transfer_securities
        return self._account_call(
            lambda: move(account_id=account_id, instrument_uid=instrument, units=units, now=self.clock())
        )

    def _account_call(self, action: Callable[[], list[AccountEvent]]) -> list[AccountEvent]:
        """Run a broker call on the loop and send its events to the account streams."""

        def run() -> list[AccountEvent]:
            events = action()
            self._fanout.account_events(events)
            return events

        return self._call(run)

    def set_faults(self, faults: Faults) -> None:
        """The faults of every connection opened from now on."""
        self._call(lambda: setattr(self, "_faults", faults))

    def fault_next(self, faults: Faults, count: int = 1) -> None:
        """Faults for the next ``count`` connections only; later ones get the server's default."""
        self._call(lambda: self._next_faults.extend([faults] * count))

    def set_connection_faults(self, connection_id: int, faults: Faults) -> None:
        """Put ``faults`` in force on an open connection, as if it had opened with them now.

        Every fault takes effect: counts and times count from this call (``drop_after=3``: three
        more frames; ``close_at=0.5``: half a second from now), and the time faults of the old ones
        that have not fired are cancelled. A stall in force ends; a close fault with neither count
        nor time closes the connection at once (its first request has come and gone). Malformed
        frames count from here; subscription faults apply to the next requests, book faults to the
        next books. A burst in progress stops; with ``burst``, a new one starts over the
        connection's subscriptions, its ``burst_frames`` counted from here.
        An unknown ``connection_id`` (or a closed one) is a ConfigurationError.
        """
        if not isinstance(faults, Faults):
            raise ConfigurationError(f"faults must be a Faults value, not {faults!r}")
        self._call(lambda: self._connection(connection_id).set_faults(faults))

    def my_subscriptions(self, connection_id: int) -> list[Any]:
        """What ``getMySubscriptions`` would answer on an open MarketDataStream connection now."""
        return self._call(lambda: self._connection(connection_id).session.my_subscriptions("inspect"))

    def _connection(self, connection_id: int) -> Connection:
        connection = self._fanout.connections.get(connection_id)
        if connection is None:
            raise ConfigurationError(f"no open connection {connection_id!r}")
        return connection

    def connections(self, *, include_closed: bool = False) -> tuple[ConnectionInfo, ...]:
        """Snapshots of the open connections (and of the closed ones, oldest first, if asked)."""

        def run() -> tuple[ConnectionInfo, ...]:
            open_ = tuple(c.info() for c in self._fanout.connections.values())
            return (*self._fanout.closed, *open_) if include_closed else open_

        return self._call(run)

    def wait_for(
        self, predicate: Callable[[Simulator], bool], timeout: float = 5.0, interval: float = 0.01
    ) -> None:
        """Poll ``predicate(self)`` until true; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulator condition not met within {timeout} s")
            time.sleep(interval)
