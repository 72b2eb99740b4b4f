"""The embedded simulator: a real WebSocket server speaking the T-Invest proxy's protocol on loopback.

``with rxinvest.sim.serve(seed=1) as sim:`` starts it on ``127.0.0.1`` (a free port by default) in a
background thread with its own asyncio event loop, and stops it on exit. It serves the six stream
endpoints at ``/ws/tinkoff.public.invest.api.contract.v1.<Service>/<Method>`` (any other path: HTTP
404) and frames everything with :mod:`rxinvest.wire`.

Protocol, as the proxy's (spec §1): the token comes in ``Authorization: Bearer <token>`` or as the
second ``Sec-WebSocket-Protocol`` value; a missing or unknown token gets close code 4016 right after
the handshake. The offered subprotocol ``json-proto`` (else ``json``) is chosen and decides the key
style of every frame. A market-data-only token (``sim.readonly_token``) can read market data; on the
account streams its accounts are refused one by one. Server pings come every 120 s unless a client
asks otherwise (``pingSettings`` on MarketDataStream, the request field on the others). Frames carry
fields at their default values too, as the proxy's current examples do (``emit_defaults=False``
leaves them out, as its 2023 frames did; clients must read both).

The market (:mod:`rxinvest.sim.market`) and the accounts (:mod:`rxinvest.sim.broker`) move in fixed
steps of simulated time; the loop paces the steps to real time times ``speed``, or not at all with
``manual=True`` (tests call :meth:`Simulator.advance`). Methods of :class:`Simulator` may be called
from any thread; they run on the simulator's loop and wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any, TypeVar

import attrs
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from rxinvest import model as m
from rxinvest.errors import DecodeError
from rxinvest.sim.broker import AccountSeed, Broker, default_accounts
from rxinvest.sim.faults import Faults, malformed_frame
from rxinvest.sim.instruments import CATALOGUE, Instrument, InstrumentIndex
from rxinvest.sim.market import Market, StepEvents
from rxinvest.sim.quote import Quote
from rxinvest.sim.subscriptions import Subscription, SubscriptionBook
from rxinvest.wire import Dialect, Stream, decode, decode_request, encode

__all__ = ["ConnectionInfo", "Simulator", "serve"]

log = logging.getLogger("rxinvest.sim")
_T = TypeVar("_T")

_PATHS = {f"/ws/{stream.path}": stream for stream in Stream}
_MARKET_DATA = (Stream.MARKET_DATA, Stream.MARKET_DATA_SERVER_SIDE)
_PING_LIMITS_MS = {  # documented ranges of the ping interval a client may ask for
    Stream.MARKET_DATA: (5_000, 180_000),
    Stream.MARKET_DATA_SERVER_SIDE: (5_000, 180_000),
    Stream.PORTFOLIO: (5_000, 180_000),
    Stream.POSITIONS: (5_000, 180_000),
    Stream.TRADES: (5_000, 180_000),
    Stream.ORDER_STATE: (1_000, 120_000),
}
# At most one book and one forming candle per subscription per 100 ms (§1.7), counted in simulated
# time: what a client sees then depends on the seed and the steps, not on how fast the machine is.
_THROTTLE = timedelta(milliseconds=100)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_FAULTS = Faults()
# The per-account answer of the operations streams: (result, status entry, success, refused).
_OPERATIONS_ANSWERS: dict[Stream, tuple[Any, Any, Any, Any]] = {
    Stream.PORTFOLIO: (
        m.PortfolioSubscriptionResult,
        m.AccountSubscriptionStatus,
        m.PortfolioSubscriptionStatus.PORTFOLIO_SUBSCRIPTION_STATUS_SUCCESS,
        m.PortfolioSubscriptionStatus.PORTFOLIO_SUBSCRIPTION_STATUS_ACCOUNT_NOT_FOUND,
    ),
    Stream.POSITIONS: (
        m.PositionsSubscriptionResult,
        m.PositionsSubscriptionStatus,
        m.PositionsAccountSubscriptionStatus.POSITIONS_SUBSCRIPTION_STATUS_SUCCESS,
        m.PositionsAccountSubscriptionStatus.POSITIONS_SUBSCRIPTION_STATUS_ACCOUNT_NOT_FOUND,
    ),
}
_BACKLOG_LIMIT = 100_000  # frames queued for a client that does not read: then it is dropped


class _RedactHeaders(logging.Filter):
    """Keeps tokens out of websockets' DEBUG handshake logs (it logs every header)."""

    _SECRET = ("authorization", "sec-websocket-protocol")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() in self._SECRET:
            record.args = (args[0], "<redacted>")
        return True


_ws_log = logging.getLogger("rxinvest.sim.websockets")
_ws_log.addFilter(_RedactHeaders())


@attrs.frozen
class ConnectionInfo:
    """A snapshot of one client connection, for tests and the CLI.

    ``requests`` are the decoded client frames in arrival order; ``subscriptions`` the active
    market-data subscriptions as (kind, key) pairs; ``accounts`` the account-stream subscription.
    """

    id: int
    stream: Stream
    dialect: str
    access: str  # "full" | "readonly"
    requests: tuple[Any, ...]
    subscriptions: tuple[tuple[str, tuple[Any, ...]], ...]
    accounts: tuple[str, ...]
    frames_sent: int
    faults: Faults
    open: bool


class _Connection:
    """One accepted client: its stream logic, its send queue and its faults. Lives on the loop."""

    def __init__(
        self, sim: Simulator, ws: ServerConnection, stream: Stream, dialect: str, access: str, faults: Faults
    ):
        self.sim = sim
        self.ws = ws
        self.id = next(sim._ids)
        self.stream = stream
        self.dialect = dialect
        self.access = access
        self.faults = faults
        self.stream_id = str(uuid.uuid4())
        self.opened = time.monotonic()
        self.requests: list[Any] = []
        self.accounts: tuple[str, ...] = ()
        self.frames_sent = 0
        self.stalled = False
        self.closed = False
        self.ping_delay = sim.ping_delay
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.rng = random.Random(f"{sim.seed}/faults/{self.id}")
        self.subscriptions = SubscriptionBook(
            sim.index,
            stream_id=self.stream_id,
            max_subscriptions=sim.max_subscriptions,
            max_requests_per_minute=sim.max_requests_per_minute,
            refuse_all=faults.too_many_requests,
            internal_errors=faults.internal_errors,
            rng=self.rng,
        )
        self.last_sent: dict[Any, datetime] = {}  # throttle: subscription key -> simulated time of last send
        self.idle_since: float | None = self.opened if stream is Stream.MARKET_DATA else None
        self.bursting = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._pinger: asyncio.Task[Any] | None = None

    # --- life cycle ----------------------------------------------------------------------------------

    async def run(self) -> None:
        self._tasks = [asyncio.create_task(self._send_loop()), asyncio.create_task(self._fault_clock())]
        self._restart_pinger()
        try:
            async for message in self.ws:
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            for task in [*self._tasks, self._pinger]:
                if task is not None:
                    task.cancel()

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            id=self.id,
            stream=self.stream,
            dialect=self.dialect,
            access=self.access,
            requests=tuple(self.requests),
            subscriptions=tuple((s.kind, s.key) for s in self.subscriptions),
            accounts=self.accounts,
            frames_sent=self.frames_sent,
            faults=self.faults,
            open=not self.closed,
        )

    def send(self, event: Any) -> None:
        self.send_frame(self.sim.frame(event, self.dialect))

    def send_frame(self, frame: str) -> None:
        if self.closed or self.bursting:
            return
        if self.queue.qsize() >= _BACKLOG_LIMIT:
            log.warning("connection %d does not read: dropping it", self.id)
            self.abort()
            return
        self.queue.put_nowait(frame)

    def abort(self) -> None:
        """Cut the TCP connection without a close frame."""
        self.closed = True
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    async def close(self, code: int, reason: str) -> None:
        self.closed = True
        await self.ws.close(code, reason)

    # --- sending, with faults ------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        faults = self.faults
        while True:
            frame = await self.queue.get()
            if self.stalled:
                continue  # a stalled server sends nothing at all
            if faults.malformed_every and (self.frames_sent + 1) % faults.malformed_every == 0:
                kind = self.rng.choice(faults.malformed_kinds)
                await self.ws.send(malformed_frame(kind, frame, self.rng))
            await self.ws.send(frame)
            self.frames_sent += 1
            await self._count_faults()

    async def _count_faults(self) -> None:
        faults, sent = self.faults, self.frames_sent
        if faults.drop_after is not None and sent >= faults.drop_after:
            self.abort()
        elif faults.stall_after is not None and sent >= faults.stall_after:
            self.stalled = True
        elif faults.close_code is not None and faults.close_after is not None and sent >= faults.close_after:
            await self.close(faults.close_code, "simulated fault")

    async def _fault_clock(self) -> None:
        """Time-based faults, in seconds since the connection opened."""
        faults = self.faults
        pending = [
            (at, action)
            for at, action in (
                (faults.drop_at, "drop"),
                (faults.stall_at, "stall"),
                (faults.close_at if faults.close_code is not None else None, "close"),
            )
            if at is not None
        ]
        for at, action in sorted(pending):
            await asyncio.sleep(max(0.0, self.opened + at - time.monotonic()))
            if action == "drop":
                self.abort()
            elif action == "stall":
                self.stalled = True
            else:
                assert faults.close_code is not None
                await self.close(faults.close_code, "simulated fault")

    def _restart_pinger(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        self._pinger = asyncio.create_task(self._ping_loop())

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ping_delay)
            if not self.stalled:
                self.send(m.Ping(time=self.sim.clock(), stream_id=self.stream_id))

    # --- requests ------------------------------------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        if self.stalled:
            return
        try:
            request = decode_request(message, stream=self.stream)
        except DecodeError as exc:
            self.requests.append(exc)
            await self.close(4003, f"invalid request: {exc.reason}"[:120])
            return
        self.requests.append(request)
        faults = self.faults
        if faults.close_code is not None and faults.close_after is None and faults.close_at is None:
            await self.close(faults.close_code, "simulated fault")
            return
        if self.stream is Stream.MARKET_DATA:
            await self._market_data_request(request)
        elif len(self.requests) == 1:  # the other streams: one request, then the server only talks
            await self._first_request(request)

    async def _market_data_request(self, request: Any) -> None:
        now = time.monotonic()
        if isinstance(request, m.PingRequest):
            self.send(m.Ping(time=self.sim.clock(), stream_id=self.stream_id, ping_request_time=request.time))
        elif isinstance(request, m.PingDelaySettings):
            if request.ping_delay_ms is not None:
                await self._set_ping_delay(request.ping_delay_ms)
        elif isinstance(request, m.GetMySubscriptions):
            for response in self.subscriptions.my_subscriptions(secrets.token_hex(16)):
                self.send(response)
        else:
            response, created = self.subscriptions.handle(request, now=now, tracking_id=secrets.token_hex(16))
            self.send(response)
            self._snapshots(created)
            self.idle_since = None if len(self.subscriptions) else now
            if created and self.faults.burst and not self.bursting:
                self._tasks.append(asyncio.create_task(self._burst()))

    async def _first_request(self, request: Any) -> None:
        stream = self.stream
        if stream is Stream.MARKET_DATA_SERVER_SIDE:
            if request.ping_settings is not None and request.ping_settings.ping_delay_ms is not None:
                await self._set_ping_delay(request.ping_settings.ping_delay_ms)
            for part in (
                request.subscribe_candles_request,
                request.subscribe_order_book_request,
                request.subscribe_trades_request,
                request.subscribe_info_request,
                request.subscribe_last_price_request,
            ):
                if part is not None:
                    await self._market_data_request(part)
            return
        delay = {
            Stream.ORDER_STATE: getattr(request, "ping_delay_millis", None),
            Stream.TRADES: getattr(request, "ping_delay_ms", None),
        }.get(stream)
        if stream in (Stream.PORTFOLIO, Stream.POSITIONS) and request.ping_settings is not None:
            delay = request.ping_settings.ping_delay_ms
        if delay is not None and not await self._set_ping_delay(delay):
            return
        self.accounts = self.sim._subscribe_accounts(self, request)

    async def _set_ping_delay(self, delay_ms: int) -> bool:
        low, high = _PING_LIMITS_MS[self.stream]
        low = min(low, int(self.sim.min_ping_delay * 1000))
        if not low <= delay_ms <= high:
            await self.close(4003, f"ping delay must be in [{low}, {high}] ms, not {delay_ms}")
            return False
        self.ping_delay = delay_ms / 1000
        self._restart_pinger()
        return True

    def _snapshots(self, created: Iterable[Subscription]) -> None:
        """What a new subscription shows at once: the current book, price, status or forming candle."""
        market = self.sim.market
        for sub in created:
            uid = sub.instrument.uid
            if sub.kind == "order_books":
                self.send(self.sim.book(uid, sub.depth, self.faults, self.rng))
                self.last_sent[("order_books", sub.key)] = market.now
            elif sub.kind == "last_prices":
                self.send(market.last_price(uid))
            elif sub.kind == "info":
                self.send(market.trading_status(uid))
            elif sub.kind == "candles" and not sub.waiting_close:
                candle = market.candle(uid, sub.interval)
                if candle is not None:
                    self.send(candle)

    # --- market data delivery ------------------------------------------------------------------------

    def on_step(self, events: StepEvents) -> None:
        if self.closed or self.stalled:
            return
        now = events.time
        subs = self.subscriptions
        if not len(subs):
            idle, limit = self.idle_since, self.sim.idle_timeout
            if idle is not None and limit is not None and time.monotonic() - idle >= limit:
                self.sim._spawn(self.close(4008, "80004: no active subscriptions"))
            return
        trades, info, prices = subs.of("trades"), subs.of("info"), subs.of("last_prices")
        for status in events.statuses:
            if (status.instrument_uid,) in info:
                self.send(status)
        for trade in events.trades:
            if (trade.instrument_uid,) in trades:
                self.send(trade)
        for interest in events.open_interest:
            sub = trades.get((interest.instrument_uid,))
            if sub is not None and sub.with_open_interest:
                self.send(interest)
        for price in events.last_prices:
            if (price.instrument_uid,) in prices:
                self.send(price)
        self._deliver_candles(events, now)
        for key, sub in subs.of("order_books").items():
            uid = sub.instrument.uid
            if uid in events.books and now - self.last_sent.get(("order_books", key), _EPOCH) >= _THROTTLE:
                self.last_sent[("order_books", key)] = now
                self.send(self.sim.book(uid, sub.depth, self.faults, self.rng))

    def _deliver_candles(self, events: StepEvents, now: datetime) -> None:
        candles = self.subscriptions.of("candles")
        if not candles:
            return
        forming: dict[tuple[Any, ...], m.Candle] = {}
        for update in events.candles:
            candle = update.candle
            sub = candles.get((candle.instrument_uid, candle.interval))
            if sub is None:
                continue
            if update.closed:
                self.send(candle)  # closing and corrective candles always go out
                forming.pop(sub.key, None)
            elif not sub.waiting_close:
                forming[sub.key] = candle  # only the latest state of this step
        for key, candle in forming.items():
            if now - self.last_sent.get(("candles", key), _EPOCH) >= _THROTTLE:
                self.last_sent[("candles", key)] = now
                self.send(candle)

    async def _burst(self) -> None:
        """Send pre-built frames for the subscribed books and trades as fast as the socket takes them."""
        self.bursting = True
        frames = self.sim.burst_frames(
            books={sub.instrument.uid: sub.depth for sub in self.subscriptions.of("order_books").values()},
            trades=[sub.instrument.uid for sub in self.subscriptions.of("trades").values()],
            dialect=self.dialect,
        )
        limit, rate = self.faults.burst_frames, self.faults.burst_rate
        try:
            if rate:
                await self._paced(frames, rate, limit)
                return
            for count, frame in enumerate(itertools.cycle(frames)):
                if limit is not None and count >= limit:
                    break
                await self.ws.send(frame)
        except ConnectionClosed:
            pass
        finally:
            self.bursting = False

    async def _paced(self, frames: list[str], rate: float, limit: int | None) -> None:
        """``rate`` frames a second, each re-encoded with the real time of its sending."""
        events = [decode(frame, stream=Stream.MARKET_DATA) for frame in frames]
        started, sent = time.monotonic(), 0
        while limit is None or sent < limit:
            due = int((time.monotonic() - started) * rate) + 1
            while sent < due and (limit is None or sent < limit):
                event = attrs.evolve(events[sent % len(events)], time=datetime.now(UTC))
                await self.ws.send(
                    encode(event, dialect=self.dialect, include_defaults=self.sim.emit_defaults)
                )
                sent += 1
            await asyncio.sleep(0.0005)


class Simulator:
    """A running simulator: its address, tokens, instruments, accounts, and controls.

    Create it with :func:`serve`. Every public method is thread-safe: it runs on the simulator's
    event loop and waits for it (``timeout`` seconds at most).
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
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
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the simulator serves on loopback only")
        if speed <= 0 or step <= 0:
            raise ValueError("speed and step must be positive")
        self.seed = seed
        self.host, self.port = host, port
        self.speed, self.step_seconds, self.manual, self.trader = speed, step, manual, trader
        self.ping_delay, self.min_ping_delay, self.idle_timeout = ping_delay, min_ping_delay, idle_timeout
        self.max_subscriptions, self.max_requests_per_minute = max_subscriptions, max_requests_per_minute
        self.timeout = timeout
        self.emit_defaults = emit_defaults
        self.index = InstrumentIndex(instruments)
        self.instruments: tuple[Instrument, ...] = tuple(instruments)
        self._start = start or datetime.now(UTC).replace(microsecond=0)
        self.market = Market(
            self.instruments, seed=seed, start=self._start, step=timedelta(seconds=step), scenario=scenario
        )
        seeds = tuple(accounts) if accounts is not None else default_accounts(self.instruments)
        self.broker = Broker(self.instruments, seeds, seed=seed)
        self.accounts: tuple[str, ...] = self.broker.accounts
        #: A token with full access, and one that may only read market data.
        self.token = f"sim-full-{secrets.token_hex(12)}"
        self.readonly_token = f"sim-readonly-{secrets.token_hex(12)}"
        self._faults = faults
        self._next_faults: list[Faults] = []
        self._ids = itertools.count(1)
        self._connections: dict[int, _Connection] = {}
        self._closed_connections: list[ConnectionInfo] = []
        self._frames: dict[tuple[int, str], tuple[Any, str]] = {}  # (id, dialect) -> (event, frame)
        self._books: dict[tuple[str, int], m.OrderBook] = {}
        self._sharing = False  # inside a step's fan-out, where frames are shared
        self._burst_cache: dict[Any, list[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
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
        self._thread = threading.Thread(target=self._run, name="rxinvest-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.timeout) or self._error is not None:
            raise RuntimeError(f"the simulator did not start: {self._error!r}") from self._error
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may have stopped already
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(self.timeout)
        self._thread.join(self.timeout)
        self._loop = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await ws_serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            compression=None,
            ping_interval=None,  # the proxy's liveness signal is its JSON ping, not WS pings
            max_size=2**20,
            logger=_ws_log,
            server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._clock_origin = time.monotonic()
        market = None if self.manual else asyncio.create_task(self._market_loop())
        self._ready.set()
        await self._stopping.wait()
        if market is not None:
            market.cancel()
        for connection in list(self._connections.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(1001, "simulator stopping"), 1.0)
        self._server.close()
        await self._server.wait_closed()

    async def _shutdown(self) -> None:
        self._stopping.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    # --- handshake -----------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path not in _PATHS:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no stream at {path}\n")
        return None

    @staticmethod
    def _offered(headers: Headers) -> list[str]:
        return [
            p.strip()
            for value in headers.get_all("Sec-WebSocket-Protocol")
            for p in value.split(",")
            if p.strip()
        ]

    def _select_subprotocol(
        self, connection: ServerConnection, subprotocols: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        for choice in ("json-proto", "json"):
            if choice in subprotocols:
                return Subprotocol(choice)
        return None

    def _access(self, headers: Headers) -> str | None:
        """'full', 'readonly' or None for the token in the headers (never logged)."""
        tokens = []
        authorization = headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            tokens.append(authorization[7:].strip())
        tokens += [p for p in self._offered(headers) if p not in ("json", "json-proto")]
        for token in tokens:
            if secrets.compare_digest(token, self.token):
                return "full"
            if secrets.compare_digest(token, self.readonly_token):
                return "readonly"
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        stream = _PATHS[request.path.split("?", 1)[0]]
        access = self._access(request.headers)
        if access is None:
            await ws.close(4016, "UNAUTHENTICATED: 40003 token missing or invalid")
            return
        dialect = ws.subprotocol or Dialect.JSON
        faults = self._next_faults.pop(0) if self._next_faults else self._faults
        connection = _Connection(self, ws, stream, str(dialect), access, faults)
        self._connections[connection.id] = connection
        log.info("connection %d: %s, %s dialect, %s access", connection.id, stream.value, dialect, access)
        try:
            await connection.run()
        finally:
            del self._connections[connection.id]
            self._closed_connections.append(connection.info())

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
        self._sharing = True
        try:
            for connection in list(self._connections.values()):
                if connection.stream in _MARKET_DATA:
                    connection.on_step(events)
            self._deliver_account_events(broker_events)
        finally:
            self._sharing = False
            self._frames.clear()
            self._books.clear()

    def frame(self, event: Any, dialect: str) -> str:
        """``event`` encoded in ``dialect``: during a step's fan-out, once however many clients get it.

        The cache holds the event itself: keyed by ``id()``, an entry must keep its object alive, or
        a new object at the same address would be sent the old frame.
        """
        if not self._sharing:
            return encode(event, dialect=dialect, include_defaults=self.emit_defaults)
        key = (id(event), dialect)
        hit = self._frames.get(key)
        if hit is None:
            hit = self._frames[key] = (
                event,
                encode(event, dialect=dialect, include_defaults=self.emit_defaults),
            )
        return hit[1]

    def book(self, uid: str, depth: int, faults: Faults, rng: random.Random) -> m.OrderBook:
        """The book of ``uid`` as a connection with ``faults`` sees it: crossed or thinned on purpose.

        Without faults, one object per step, instrument and depth: its frame is encoded once."""
        if self._sharing and not (faults.crossed_books or faults.inconsistent_books):
            book = self._books.get((uid, depth))
            if book is None:
                book = self._books[(uid, depth)] = self.market.book(uid, depth)
            return book
        book = self.market.book(uid, depth)
        if faults.crossed_books and rng.random() < faults.crossed_books and book.bids and book.asks:
            worst_ask = book.asks[-1].price
            assert worst_ask is not None  # the market prices every level
            crossed = m.Order(price=worst_ask + Decimal(1), quantity=1)  # a bid above every ask
            book = attrs.evolve(book, bids=(crossed, *book.bids[:-1]), is_consistent=False)
        elif faults.inconsistent_books and rng.random() < faults.inconsistent_books and len(book.bids) > 2:
            book = attrs.evolve(book, bids=book.bids[::2], is_consistent=False)
        return book

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
        key = (tuple(sorted((books or {}).items())), tuple(sorted(trades)), dialect, steps)
        cached = self._burst_cache.get(key)
        if cached is None:
            cached = self._burst_cache[key] = self._make_burst_frames(books or {}, trades, dialect, steps)
        return cached

    def _make_burst_frames(
        self, books: Mapping[str, int], trades: Iterable[str], dialect: str, steps: int
    ) -> list[str]:
        market = Market(
            self.instruments, seed=self.seed, start=self.market.now, step=timedelta(seconds=self.step_seconds)
        )
        depths = {self.index[i].uid: depth for i, depth in books.items()}
        traded = {self.index[i].uid for i in trades}
        full = self.emit_defaults
        frames: list[str] = []
        for _ in range(steps):
            events = market.step()
            frames += [
                encode(t, dialect=dialect, include_defaults=full)
                for t in events.trades
                if t.instrument_uid in traded
            ]
            frames += [
                encode(market.book(uid, d), dialect=dialect, include_defaults=full)
                for uid, d in depths.items()
            ]
        return frames or [encode(m.Ping(time=market.now), dialect=dialect)]

    def _subscribe_accounts(self, connection: _Connection, request: Any) -> tuple[str, ...]:
        """Answer an account-stream request; returns the accounts it subscribed."""
        requested = tuple(request.accounts)
        known = set(self.accounts)
        allowed = connection.access == "full"
        granted = tuple(a for a in requested if allowed and a in known)
        stream, tracking = connection.stream, secrets.token_hex(16)
        if stream in (Stream.ORDER_STATE, Stream.TRADES):
            refused = [a for a in requested if a not in granted]
            error = None
            if refused or not requested:
                code, text = (
                    ("40002", "insufficient privileges") if not allowed else ("50004", "account not found")
                )
                error = m.ErrorDetail(
                    code=code, message=f"{text}: {', '.join(refused) or 'no accounts requested'}"
                )
            connection.send(
                m.SubscriptionResponse(
                    tracking_id=tracking,
                    status=m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_ERROR
                    if error
                    else m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_OK,
                    stream_id=connection.stream_id,
                    accounts=granted,
                    error=error,
                )
            )
        else:  # PortfolioStream, PositionsStream: one status per requested account
            result, status, ok, missing = _OPERATIONS_ANSWERS[stream]
            statuses = tuple(
                status(account_id=a, subscription_status=ok if a in granted else missing) for a in requested
            )
            connection.send(result(accounts=statuses, tracking_id=tracking, stream_id=connection.stream_id))
            if stream is Stream.PORTFOLIO:
                quotes = self.market.quotes()
                for account in granted:
                    connection.send(self.broker.portfolio(account, quotes))
            elif request.with_initial_positions:
                for account in granted:
                    connection.send(self.broker.positions(account, self.clock()))
        return granted

    def _deliver_account_events(self, events: Sequence[Any]) -> None:
        if not events:
            return
        targets = {
            m.OrderState: Stream.ORDER_STATE,
            m.OrderTrades: Stream.TRADES,
            m.PositionData: Stream.POSITIONS,
        }
        changed: set[str] = set()
        connections = [c for c in self._connections.values() if c.accounts]
        for event in events:
            changed.add(event.account_id)
            stream = targets[type(event)]
            for connection in connections:
                if connection.stream is stream and event.account_id in connection.accounts:
                    connection.send(event)
        portfolio = [c for c in connections if c.stream is Stream.PORTFOLIO]
        if portfolio:
            quotes = self.market.quotes()
            for account in sorted(changed):
                snapshot = self.broker.portfolio(account, quotes)
                for connection in portfolio:
                    if account in connection.accounts:
                        connection.send(snapshot)

    # --- thread-safe controls ------------------------------------------------------------------------

    def _call(self, function: Callable[[], _T]) -> _T:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the simulator is not running")

        async def run() -> _T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(self.timeout)

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

        def run() -> m.OrderState:
            instrument = self.index.get(instrument_id)
            quote = self.market.quote(instrument.uid) if instrument else None
            events = self.broker.place_order(
                account_id=account_id,
                instrument_id=instrument_id,
                direction=direction,
                lots=lots,
                order_type=kind,
                price=price,
                order_request_id=order_request_id,
                now=self.clock(),
                quote=quote or self._no_quote(instrument_id),
            )
            self._deliver_account_events(events)
            states = [e for e in events if isinstance(e, m.OrderState)]
            return states[0]

        return self._call(run)

    def cancel_order(self, account_id: str, order_id: str) -> list[Any]:
        """Cancel an active order; returns the events it caused (empty if nothing was cancelled)."""

        def run() -> list[Any]:
            events = self.broker.cancel_order(account_id=account_id, order_id=order_id, now=self.clock())
            self._deliver_account_events(events)
            return events

        return self._call(run)

    def move_money(self, account_id: str, amount: Decimal, *, kind: str = "transfer") -> list[Any]:
        """An external movement: money in (``amount`` > 0, e.g. a dividend) or out; returns its events."""

        def run() -> list[Any]:
            events = self.broker.external(account_id=account_id, amount=amount, now=self.clock(), kind=kind)
            self._deliver_account_events(events)
            return events

        return self._call(run)

    @staticmethod
    def _no_quote(instrument_id: str) -> Quote:
        """The quote of an unknown instrument: the broker rejects the order with a clear cause."""
        return Quote(instrument_id, None, None, 0, 0, Decimal(0), tradable=False)

    def set_faults(self, faults: Faults) -> None:
        """The faults of every connection opened from now on."""
        self._call(lambda: setattr(self, "_faults", faults))

    def fault_next(self, faults: Faults, count: int = 1) -> None:
        """Faults for the next ``count`` connections only; later ones get the server's default."""
        self._call(lambda: self._next_faults.extend([faults] * count))

    def set_connection_faults(self, connection_id: int, faults: Faults) -> None:
        """Change the faults of one open connection (counts and times keep running)."""

        def run() -> None:
            connection = self._connections[connection_id]
            connection.faults = faults
            connection.subscriptions.refuse_all = faults.too_many_requests
            connection.subscriptions.internal_errors = faults.internal_errors
            connection._tasks.append(asyncio.create_task(connection._fault_clock()))

        self._call(run)

    def my_subscriptions(self, connection_id: int) -> list[Any]:
        """What ``getMySubscriptions`` would answer on an open MarketDataStream connection now."""
        return self._call(lambda: self._connections[connection_id].subscriptions.my_subscriptions("inspect"))

    def connections(self, *, include_closed: bool = False) -> tuple[ConnectionInfo, ...]:
        """Snapshots of the open connections (and of the closed ones, oldest first, if asked)."""

        def run() -> tuple[ConnectionInfo, ...]:
            open_ = tuple(c.info() for c in self._connections.values())
            return (*self._closed_connections, *open_) if include_closed else open_

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


@contextlib.contextmanager
def serve(**options: Any) -> Iterator[Simulator]:
    """Run a simulator for the duration of a ``with`` block; see :class:`Simulator` for options.

    >>> with serve(seed=7, manual=True) as sim:      # doctest: +SKIP
    ...     sim.base_url, sim.instruments[0].ticker
    ('ws://127.0.0.1:54321/ws/', 'SBER')
    """
    simulator = Simulator(**options)
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()
