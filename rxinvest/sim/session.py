"""What the simulated proxy does for one client stream, sans-I/O: a decoded request in, outputs out.

A :class:`Session` has no socket, task or clock. Its connection's shell
(:mod:`rxinvest.sim.connection`) decodes each client frame and calls :meth:`Session.receive` with
the times it read, and passes on each step of the market (:meth:`Session.on_step`) and each batch
of the broker's events (:meth:`Session.on_account_events`). Each returns a list of :data:`Output`,
in the order the shell must carry them out: model messages to send, and :class:`Instruction` values
for what else it must do (:class:`Close`, :class:`SetPingDelay`, :class:`StartBurst`). Outputs
listed after a ``Close`` are listed all the same (the shell sends nothing on a closed connection):
the session's state never depends on the shell.

Rules (spec §1, and the simulator's choices where the docs are silent):

* MarketDataStream takes any number of requests. ``PingRequest`` gets a ``Ping`` carrying its time.
  ``PingDelaySettings`` sets the server's ping interval, within the stream's documented range (the
  ``min_ping_delay`` setting may lower the floor, for tests); out of range, the stream is closed with
  4003. ``GetMySubscriptions`` gets one response per active kind. A subscription request gets its
  response (:class:`~rxinvest.sim.subscriptions.SubscriptionBook`), then what each new subscription
  shows at once: the book, the last price, the trading status, the forming candle (unless the
  subscription waits for the close).
* The other streams take one request and ignore the rest. MarketDataServerSideStream's request holds
  ping settings and up to one subscription request per kind, handled in kind order. An account
  stream's holds the accounts and a ping interval: each account is granted if the token has full
  access and the account exists. OrderStateStream and TradesStream answer with one
  ``SubscriptionResponse``, ERROR if any account was refused or none was asked for (code 40002 for a
  read-only token, else 50004; the message names the refused accounts); PortfolioStream and
  PositionsStream with one status per account, then the portfolio of each granted account, or its
  positions if ``with_initial_positions``.
* A market event goes to the subscriptions it belongs to. A book, and a forming candle, go out at
  most once per 100 ms of simulated time per subscription (§1.7): on a step that changes them, if
  the last one went out 100 ms ago or more. What is held back is not queued: the next one sent is
  the state of its moment. Closed and corrective candles always go out; open interest only with
  ``with_open_interest``.
* A MarketDataStream left without subscriptions for ``idle_timeout`` seconds is closed with 4008
  and reason 80004.
* Account events go to the connections of their stream that hold their account; a PortfolioStream
  also gets a fresh portfolio of each account they touched.
* The book faults (``crossed_books``, ``inconsistent_books``) distort the books this session sends.

Times come in as arguments: ``now`` in monotonic seconds (request rate, idle timeout), ``clock`` the
simulated time (pings, position snapshots). Randomness comes only from the ``rng`` passed in, which
the connection's other faults share.
"""

from __future__ import annotations

import random
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias

import attrs

from rxinvest import model as m
from rxinvest.model.kinds import REQUEST_KINDS, Kind
from rxinvest.model.operations import PER_ACCOUNT_ANSWERS
from rxinvest.sim.broker import Broker
from rxinvest.sim.broker import Event as AccountEvent
from rxinvest.sim.fault_injection import InjectedBook, distort_book
from rxinvest.sim.faults import Faults
from rxinvest.sim.instruments import InstrumentIndex
from rxinvest.sim.market import Market, StepEvents
from rxinvest.sim.quote import Quote
from rxinvest.sim.subscriptions import Subscription, SubscriptionBook
from rxinvest.wire import Stream

__all__ = [
    "Access",
    "Close",
    "Instruction",
    "Output",
    "PortfolioSnapshots",
    "Session",
    "SessionSettings",
    "SetPingDelay",
    "StartBurst",
]

#: What a token may do: everything, or read market data only.
Access: TypeAlias = Literal["full", "readonly"]

# The documented ranges of the ping interval a client may ask for, in ms.
_PING_LIMITS_MS = {
    Stream.MARKET_DATA: (5_000, 180_000),
    Stream.MARKET_DATA_SERVER_SIDE: (5_000, 180_000),
    Stream.PORTFOLIO: (5_000, 180_000),
    Stream.POSITIONS: (5_000, 180_000),
    Stream.TRADES: (5_000, 180_000),
    Stream.ORDER_STATE: (1_000, 120_000),
}
# Counted in simulated time: what a client sees then depends on the seed and the steps, not on how
# fast the machine is.
_THROTTLE = timedelta(milliseconds=100)
_ACCOUNT_EVENT_STREAMS: dict[type, Stream] = {
    m.OrderState: Stream.ORDER_STATE,
    m.OrderTrades: Stream.TRADES,
    m.PositionData: Stream.POSITIONS,
}
_AccountRequest: TypeAlias = (
    m.OrderStateStreamRequest | m.TradesStreamRequest | m.PortfolioStreamRequest | m.PositionsStreamRequest
)


class Instruction:
    """Something the connection's shell must do besides sending a message."""


@attrs.frozen
class Close(Instruction):
    """Close the WebSocket with ``code`` and ``reason``."""

    code: int
    reason: str


@attrs.frozen
class SetPingDelay(Instruction):
    """Send the server's pings every ``seconds`` from now on."""

    seconds: float


@attrs.frozen
class StartBurst(Instruction):
    """Start burst mode (the ``burst`` fault) over the stream's subscriptions now; a burst that runs
    already takes in the subscriptions made since it began."""


#: A model message to send, or an :class:`Instruction`.
Output: TypeAlias = object


@attrs.frozen
class SessionSettings:
    """The limits of every session of a server (the simulator's options of the same names)."""

    max_subscriptions: int = 300
    max_requests_per_minute: int = 100
    min_ping_delay: float = 5.0
    idle_timeout: float | None = 120.0


class PortfolioSnapshots:
    """The portfolios after one batch of account events: each account valued once, on first ask, and
    the same object given to every session that asks (so its frame can be encoded once)."""

    def __init__(self, market: Market, broker: Broker) -> None:
        self._market = market
        self._broker = broker
        self._quotes: dict[str, Quote] | None = None
        self._snapshots: dict[str, m.PortfolioResponse] = {}

    def __call__(self, account_id: str) -> m.PortfolioResponse:
        snapshot = self._snapshots.get(account_id)
        if snapshot is None:
            if self._quotes is None:
                self._quotes = self._market.quotes()
            snapshot = self._snapshots[account_id] = self._broker.portfolio(account_id, self._quotes)
        return snapshot


def _new_tracking_id() -> str:
    return secrets.token_hex(16)


class Session:
    """One client stream of the simulated proxy (see the module docstring). Not thread-safe.

    ``opened`` is the monotonic time the connection opened (the idle timeout counts from it);
    ``market``, ``broker`` and ``instruments`` are the server's, read here and never changed.
    """

    def __init__(
        self,
        stream: Stream,
        *,
        access: Access,
        stream_id: str,
        market: Market,
        broker: Broker,
        instruments: InstrumentIndex,
        settings: SessionSettings,
        faults: Faults,
        rng: random.Random,
        opened: float,
        new_tracking_id: Callable[[], str] = _new_tracking_id,
        book_log: deque[InjectedBook] | None = None,
    ) -> None:
        self.stream = stream
        self.access = access
        self.stream_id = stream_id
        self.faults = faults
        #: The accounts an account stream was granted.
        self.accounts: tuple[str, ...] = ()
        self.subscriptions = SubscriptionBook(
            instruments,
            stream_id=stream_id,
            max_subscriptions=settings.max_subscriptions,
            max_requests_per_minute=settings.max_requests_per_minute,
            refuse_all=faults.too_many_requests,
            internal_errors=faults.internal_errors,
            rng=rng,
        )
        self._market = market
        self._broker = broker
        self._settings = settings
        self._rng = rng
        self._new_tracking_id = new_tracking_id
        self._book_log = book_log  # where distorted books are logged (the simulator's ground truth)
        self._requests = 0
        # The throttle: (kind, subscription key) -> simulated time its last book or candle went out.
        self._last_sent: dict[tuple[Kind, tuple[Any, ...]], datetime] = {}
        self._idle_since: float | None = opened if stream is Stream.MARKET_DATA else None

    def set_faults(self, faults: Faults) -> list[Output]:
        """The faults in force from now on (the subscription faults included); returns a
        :class:`StartBurst` if they ask for a burst and the stream has subscriptions to burst."""
        self.faults = faults
        self.subscriptions.refuse_all = faults.too_many_requests
        self.subscriptions.internal_errors = faults.internal_errors
        return [StartBurst()] if faults.burst and len(self.subscriptions) else []

    def ping(self, clock: datetime) -> m.Ping:
        """The server's periodic ping."""
        return m.Ping(time=clock, stream_id=self.stream_id)

    def my_subscriptions(self, tracking_id: str) -> list[object]:
        """What getMySubscriptions would answer now."""
        return self.subscriptions.my_subscriptions(tracking_id)

    # --- requests ------------------------------------------------------------------------------------

    def receive(self, request: object, *, now: float, clock: datetime) -> list[Output]:
        """Handle one decoded client request."""
        self._requests += 1
        if self.stream is Stream.MARKET_DATA:
            return self._market_data_request(request, now, clock)
        if self._requests > 1:  # the other streams take one request, then only the server talks
            return []
        if isinstance(request, m.MarketDataServerSideStreamRequest):
            return self._server_side_request(request, now)
        assert isinstance(request, _AccountRequest), request  # wire decodes each stream's own type
        return self._account_request(request, clock)

    def _market_data_request(self, request: object, now: float, clock: datetime) -> list[Output]:
        if isinstance(request, m.PingRequest):
            return [m.Ping(time=clock, stream_id=self.stream_id, ping_request_time=request.time)]
        if isinstance(request, m.PingDelaySettings):
            return [] if request.ping_delay_ms is None else [self._ping_delay(request.ping_delay_ms)]
        if isinstance(request, m.GetMySubscriptions):
            return self.my_subscriptions(self._new_tracking_id())
        return self._subscribe(request, now)

    def _server_side_request(self, request: m.MarketDataServerSideStreamRequest, now: float) -> list[Output]:
        out: list[Output] = []
        settings = request.ping_settings
        if settings is not None and settings.ping_delay_ms is not None:
            out.append(self._ping_delay(settings.ping_delay_ms))
        values = (getattr(request, field.name) for field in attrs.fields(type(request)))
        parts = {REQUEST_KINDS[type(value)]: value for value in values if type(value) in REQUEST_KINDS}
        for kind in Kind:
            if kind in parts:
                out += self._subscribe(parts[kind], now)
        return out

    def _subscribe(self, request: object, now: float) -> list[Output]:
        response, created = self.subscriptions.handle(request, now=now, tracking_id=self._new_tracking_id())
        out = [response, *self._snapshots(created)]
        self._idle_since = None if len(self.subscriptions) else now
        if created and self.faults.burst:
            out.append(StartBurst())
        return out

    def _ping_delay(self, delay_ms: int) -> SetPingDelay | Close:
        low, high = _PING_LIMITS_MS[self.stream]
        low = min(low, int(self._settings.min_ping_delay * 1000))
        if not low <= delay_ms <= high:
            return Close(4003, f"ping delay must be in [{low}, {high}] ms, not {delay_ms}")
        return SetPingDelay(delay_ms / 1000)

    def _snapshots(self, created: Iterable[Subscription]) -> list[Output]:
        """What new subscriptions show at once: the current book, price, status or forming candle."""
        market = self._market
        out: list[Output] = []
        for sub in created:
            uid = sub.instrument.uid
            if sub.kind is Kind.ORDER_BOOKS:
                out.append(self._book(uid, sub.depth))
                self._last_sent[(Kind.ORDER_BOOKS, sub.key)] = market.now
            elif sub.kind is Kind.LAST_PRICES:
                out.append(market.last_price(uid))
            elif sub.kind is Kind.INFO:
                out.append(market.trading_status(uid))
            elif sub.kind is Kind.CANDLES and not sub.waiting_close:
                candle = market.candle(uid, sub.interval)
                if candle is not None:
                    out.append(candle)
        return out

    def _book(self, uid: str, depth: int) -> m.OrderBook:
        return distort_book(self._market.book(uid, depth), self.faults, self._rng, self._book_log)

    # --- account streams -----------------------------------------------------------------------------

    def _account_request(self, request: _AccountRequest, clock: datetime) -> list[Output]:
        out: list[Output] = []
        delay = _asked_ping_delay_ms(request)
        if delay is not None:
            setting = self._ping_delay(delay)
            if isinstance(setting, Close):
                return [setting]
            out.append(setting)
        requested = tuple(request.accounts)
        allowed = self.access == "full"
        known = set(self._broker.accounts)
        self.accounts = granted = tuple(a for a in requested if allowed and a in known)
        tracking_id = self._new_tracking_id()
        if isinstance(request, m.OrderStateStreamRequest | m.TradesStreamRequest):
            refused = [a for a in requested if a not in granted]
            error = None
            if refused or not requested:
                code, text = (
                    ("40002", "insufficient privileges") if not allowed else ("50004", "account not found")
                )
                error = m.ErrorDetail(
                    code=code, message=f"{text}: {', '.join(refused) or 'no accounts requested'}"
                )
            status = m.ResultSubscriptionStatus
            out.append(
                m.SubscriptionResponse(
                    tracking_id=tracking_id,
                    status=status.RESULT_SUBSCRIPTION_STATUS_ERROR
                    if error
                    else status.RESULT_SUBSCRIPTION_STATUS_OK,
                    stream_id=self.stream_id,
                    accounts=granted,
                    error=error,
                )
            )
            return out
        answer = PER_ACCOUNT_ANSWERS[self.stream]
        entries = tuple(
            answer.entry(account_id=a, subscription_status=answer.granted if a in granted else answer.refused)
            for a in requested
        )
        out.append(answer.result(accounts=entries, tracking_id=tracking_id, stream_id=self.stream_id))
        if isinstance(request, m.PortfolioStreamRequest):
            quotes = self._market.quotes()
            out += [self._broker.portfolio(account, quotes) for account in granted]
        elif request.with_initial_positions:
            out += [self._broker.positions(account, clock) for account in granted]
        return out

    def on_account_events(
        self, events: Sequence[AccountEvent], portfolios: Callable[[str], m.PortfolioResponse]
    ) -> list[Output]:
        """The broker's ``events`` this stream shows, then (PortfolioStream) the fresh portfolio of
        each of its accounts they touched, in account order."""
        if not self.accounts:
            return []
        mine = self.accounts
        out: list[Output] = [
            e for e in events if _ACCOUNT_EVENT_STREAMS[type(e)] is self.stream and e.account_id in mine
        ]
        if self.stream is Stream.PORTFOLIO:
            out += [portfolios(a) for a in sorted({e.account_id for e in events}) if a in mine]
        return out

    # --- market data delivery ------------------------------------------------------------------------

    def on_step(self, events: StepEvents, *, now: float) -> list[Output]:
        """What one step of the market brings this stream (``now``: monotonic seconds)."""
        subs = self.subscriptions
        if not len(subs):
            idle, limit = self._idle_since, self._settings.idle_timeout
            if idle is not None and limit is not None and now - idle >= limit:
                return [Close(4008, "80004: no active subscriptions")]
            return []
        out: list[Output] = []
        trades, info, prices = subs.of(Kind.TRADES), subs.of(Kind.INFO), subs.of(Kind.LAST_PRICES)
        out += [status for status in events.statuses if (status.instrument_uid,) in info]
        out += [trade for trade in events.trades if (trade.instrument_uid,) in trades]
        for interest in events.open_interest:
            sub = trades.get((interest.instrument_uid,))
            if sub is not None and sub.with_open_interest:
                out.append(interest)
        out += [price for price in events.last_prices if (price.instrument_uid,) in prices]
        self._deliver_candles(events, out)
        time = events.time
        for key, sub in subs.of(Kind.ORDER_BOOKS).items():
            uid = sub.instrument.uid
            if uid in events.books and self._throttle_passes(Kind.ORDER_BOOKS, key, time):
                out.append(self._book(uid, sub.depth))
        return out

    def _deliver_candles(self, events: StepEvents, out: list[Output]) -> None:
        candles = self.subscriptions.of(Kind.CANDLES)
        if not candles:
            return
        forming: dict[tuple[Any, ...], m.Candle] = {}
        for update in events.candles:
            candle = update.candle
            sub = candles.get((candle.instrument_uid, candle.interval))
            if sub is None:
                continue
            if update.closed:
                out.append(candle)  # closing and corrective candles always go out
                forming.pop(sub.key, None)
            elif not sub.waiting_close:
                forming[sub.key] = candle  # only the latest state of this step
        out += [
            candle for key, candle in forming.items() if self._throttle_passes(Kind.CANDLES, key, events.time)
        ]

    def _throttle_passes(self, kind: Kind, key: tuple[Any, ...], time: datetime) -> bool:
        """Whether a throttled message of this subscription may go out at ``time`` (and if so, it
        counts as sent then)."""
        last = self._last_sent.get((kind, key))
        if last is not None and time - last < _THROTTLE:
            return False
        self._last_sent[(kind, key)] = time
        return True


def _asked_ping_delay_ms(request: _AccountRequest) -> int | None:
    """The ping interval an account stream's request asks for (each stream names it differently)."""
    if isinstance(request, m.OrderStateStreamRequest):
        return request.ping_delay_millis
    if isinstance(request, m.TradesStreamRequest):
        return request.ping_delay_ms
    return None if request.ping_settings is None else request.ping_settings.ping_delay_ms
