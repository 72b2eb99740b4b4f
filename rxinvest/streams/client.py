"""The Rx face of rxinvest: a :class:`Client` whose sources are Observables of typed events.

Threads: each stream connection has one reader thread (websocket-client) that decodes and routes
but never runs user code. Events reach subscribers on the client's *delivery scheduler*: by default
a small pool of ``rxinvest-delivery`` threads, where each subscription's ``on_next`` calls never
overlap and keep arrival order, while a slow subscriber holds up only itself. Pass
``scheduler=EventLoopScheduler()`` to run every pipeline on one thread, or
``AsyncIOThreadSafeScheduler(loop)`` to deliver on an asyncio loop (Jupyter).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxinvest import model as m
from rxinvest.derived import Marker, PositionCheck
from rxinvest.errors import ClientClosedError, ConfigurationError, RxInvestError
from rxinvest.model.kinds import Kind
from rxinvest.ops import reconcile_positions
from rxinvest.protocol import AccountSession, Checked, MarketDataSession, Topic
from rxinvest.protocol.pacing import Limits
from rxinvest.protocol.recovery import AccountRecovery
from rxinvest.protocol.topic import interval_of, member_of
from rxinvest.streams.accounts import AccountConnection
from rxinvest.streams.connection import ListenerTransport
from rxinvest.streams.delivery import Broadcast, DeliveryScheduler, DeliveryStats, Mailbox, Policy
from rxinvest.streams.events import ConnectionStatus, Metrics, SubscriptionCheck, SubscriptionStatus
from rxinvest.streams.market_data import MarketDataConnection, MarketDataPool, SharedBudget
from rxinvest.transport import Listener, RestClient, Tap, Transport, TransportFactory, WebSocketTransport
from rxinvest.wire import Dialect, Stream, Unary

__all__ = ["DEFAULT_BACKLOG", "DEFAULT_PING_DELAY", "Client", "MarketData", "Operations", "Orders", "Source"]

_T = TypeVar("_T")
log = logging.getLogger("rxinvest.streams")
#: Seconds between server pings the client asks for: a stalled stream is noticed within about 30 s.
DEFAULT_PING_DELAY = 15.0
#: Events a subscriber of trades, candles or statuses may lag behind before the oldest are dropped.
DEFAULT_BACKLOG = 10_000


class _Secret:
    """A token that shows as ``***`` wherever it is printed, logged or put in a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _names(values: object, what: str) -> tuple[str, ...]:
    """One id or an iterable of them, each a non-empty ``str``, duplicates dropped in order."""
    if isinstance(values, str):
        values = (values,)
    elif isinstance(values, Iterable) and not isinstance(values, bytes | bytearray | Mapping):
        values = tuple(values)
    else:
        raise ConfigurationError(f"expected one {what} or a non-empty list of them, not {values!r}")
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise ConfigurationError(f"expected one {what} or a non-empty list of them, not {values!r}")
    return tuple(dict.fromkeys(values))


def _ids(ids: object) -> tuple[str, ...]:
    return _names(ids, "instrument id (FIGI, uid or TICKER_CLASSCODE)")


def _flag(value: object, name: str) -> bool:
    if type(value) is not bool:
        raise ConfigurationError(f"{name} must be True or False, not {value!r}")
    return value


def _backlog(value: object) -> int | None:
    if value is not None and (type(value) is not int or value < 2):
        raise ConfigurationError(f"backlog must be None (unbounded) or an int of at least 2, not {value!r}")
    return value


def _ping_delay(value: object) -> float | None:
    """Seconds between server pings, or None for the server's default (120 s). The API takes 5 to
    120 s on every stream; shorter is for simulators (a real server closes the stream with 4003)."""
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 < value <= 120:  # type: ignore[operator]
        raise ConfigurationError(f"ping_delay must be None or seconds up to 120, not {value!r}")
    if value < 5:  # type: ignore[operator]
        log.warning("ping_delay=%s: the API takes 5 to 120 s; a real server will refuse it", value)
    return float(value)  # type: ignore[arg-type]


class Source(Observable[_T]):
    """An Observable of one stream's events, as every source of the client returns it.

    ``source.with_markers()`` is the same source with :mod:`~rxinvest.derived.markers` between the
    events: :class:`~rxinvest.derived.Subscribed` first, a :class:`~rxinvest.derived.Gap` wherever
    events may be missing (a reconnect, an overflow of the backlog), a
    :class:`~rxinvest.derived.Refused` for a target the API refused. Operators that must know about
    losses require it; plain subscribers never see a marker.
    """

    def __init__(self, make: Callable[[bool], Callable[..., abc.DisposableBase]]) -> None:
        super().__init__(make(False))
        self._make = make

    def with_markers(self) -> Observable[_T | Marker]:
        return Observable(self._make(True))


class Client:
    """A connection to the T-Invest streams (or the simulator). Create it with :func:`rxinvest.connect`.

    Streams connect when first subscribed and are shared: every market-data source uses one
    MarketDataStream connection; each account source one connection per stream and account set.
    ``close()`` (or leaving a ``with`` block) completes every subscription and stops every thread.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        dialect: str = "json",
        app_name: str | None = "rxinvest",
        ping_delay: float | None = DEFAULT_PING_DELAY,
        scheduler: abc.SchedulerBase | None = None,
        open_timeout: float = 10.0,
        transport_factory: TransportFactory | None = None,
        on_close: Sequence[Callable[[], None]] = (),
        limits: Limits = Limits(),  # noqa: B008 (frozen: one shared default is safe)
        rest_url: str | None = None,
        tap: Tap | None = None,
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.dialect = Dialect.parse(dialect).value
        self._token = _Secret(token)
        self._app_name = app_name
        if type(open_timeout) not in (int, float) or open_timeout <= 0:
            raise ConfigurationError(
                f"open_timeout must be a positive number of seconds, not {open_timeout!r}"
            )
        self._open_timeout = open_timeout
        ping_delay = _ping_delay(ping_delay)
        self._transport_factory = transport_factory
        self._tap = tap
        self._own_scheduler = scheduler is None
        self.scheduler: abc.SchedulerBase = scheduler or DeliveryScheduler()
        # Account events never wait behind market data: with the default pools they have their own.
        self._account_scheduler: abc.SchedulerBase = scheduler or DeliveryScheduler(
            8, name="rxinvest-delivery-accounts"
        )
        self._on_close = list(on_close)
        # The unary API that fills account streams' gaps (None: gaps are only marked).
        self._rest = None if rest_url is None else RestClient(rest_url, token, app_name=app_name)
        #: The embedded simulator when connected with ``target="sim"`` (else None).
        self.sim: Any = None
        #: The recorder when connected with ``record=`` (a :class:`~rxinvest.replay.Recorder`), else None.
        self.recorder: Any = None
        #: The player when connected with ``replay=`` (a :class:`~rxinvest.replay.Player`), else None.
        self.replay: Any = None
        self._statuses = Broadcast(self.scheduler, limit=DEFAULT_BACKLOG, name="statuses")
        self._lock = threading.Lock()
        self._closed = False
        if not isinstance(limits, Limits):
            raise ConfigurationError(f"limits must be a rxinvest.Limits, not {limits!r}")
        self.limits = limits
        budget = None if limits.requests is None else SharedBudget(limits.requests, limits.window)
        market_data = self._factory(Stream.MARKET_DATA)

        def shard(index: int, pool: MarketDataPool) -> MarketDataConnection:
            session = MarketDataSession(
                dialect=self.dialect, ping_delay=ping_delay, budget=budget, linger=limits.linger
            )
            return MarketDataConnection(
                market_data, self._statuses.emit, session, shard=index, on_work=pool.wake, on_full=pool.moved
            )

        self._market_data = MarketDataPool(shard, limits.plan, budget)
        self._accounts: dict[tuple[Any, ...], AccountConnection] = {}
        self._ping_delay = ping_delay
        self.market_data = MarketData(self)
        self.orders = Orders(self)
        self.operations = Operations(self)

    def __repr__(self) -> str:
        return f"<rxinvest.Client {self.base_url} dialect={self.dialect}{' closed' if self._closed else ''}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def statuses(self) -> Observable[ConnectionStatus | SubscriptionStatus]:
        """Connection and subscription lifecycle (:mod:`rxinvest.streams.events`), as it happens.

        Hot: subscribers see what happens after they subscribe. Delivered like every source, on the
        delivery scheduler; completes when the client closes.
        """
        return self._statuses.observable()

    @property
    def connections(self) -> int:
        """How many stream connections are open now."""
        return sum(1 for c in self._connections() if c.is_open)

    def _connections(self) -> list[MarketDataConnection | AccountConnection]:
        with self._lock:
            accounts = list(self._accounts.values())
        return [*self._market_data.connections(), *accounts]

    def metrics(self, interval: float = 5.0) -> Observable[Metrics]:
        """An Observable of :class:`~rxinvest.streams.Metrics` snapshots, one every ``interval``
        seconds, rates over each interval; each subscription has its own. Delivered on a timer
        thread (keep ``on_next`` short); completes when the client closes."""
        if type(interval) not in (int, float) or not interval > 0:
            raise ConfigurationError(f"interval must be a positive number of seconds, not {interval!r}")

        def subscribe(observer: abc.ObserverBase[Metrics], _: abc.SchedulerBase | None = None) -> Disposable:
            last: list[Any] = [time.monotonic(), self._received()]
            stop = threading.Event()

            def run() -> None:
                while not stop.wait(interval):
                    if self._closed:
                        observer.on_completed()
                        return
                    now, received = time.monotonic(), self._received()
                    snapshot = self._snapshot(now - last[0], received, last[1])
                    last[:] = [now, received]
                    observer.on_next(snapshot)

            threading.Thread(target=run, name="rxinvest-metrics", daemon=True).start()
            return Disposable(stop.set)

        return Observable(subscribe)

    def _received(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for connection in self._connections():
            counts.update(connection.received_by_type())
        return counts

    def _snapshot(self, seconds: float, received: Counter[str], before: Counter[str]) -> Metrics:
        connections = self._connections()
        stats = self.deliveries
        dropped: Counter[str] = Counter()
        conflated: Counter[str] = Counter()
        for stat in stats:
            dropped[stat.policy.value] += stat.dropped
            conflated[stat.policy.value] += stat.conflated
        budget = self._market_data.budget
        now = datetime.now(UTC)
        return Metrics(
            time=now,
            interval=seconds,
            messages=dict(received),
            rates={name: (n - before[name]) / seconds for name, n in received.items()},
            backlog=sum(stat.backlog for stat in stats),
            deepest=max((stat.max_backlog for stat in stats), default=0),
            dropped=dict(dropped),
            conflated=dict(conflated),
            reconnects=sum(max(0, c.opens - 1) for c in connections),
            gaps=sum(c.gaps for c in connections),
            malformed=sum(c.malformed for c in connections),
            recovered=sum(c.recovered for c in connections if isinstance(c, AccountConnection)),
            recoveries_failed=sum(
                c.recoveries_failed for c in connections if isinstance(c, AccountConnection)
            ),
            requests_used=0 if budget is None else budget.used(now),
            request_budget=None if budget is None else budget.limit,
            subscriptions=tuple(shard.subscriptions() for shard in self._market_data.connections()),
            connections=sum(1 for c in connections if c.is_open),
        )

    def check(self, timeout: float = 10.0) -> SubscriptionCheck:
        """Ask the server which subscriptions it holds (getMySubscriptions, on every open
        market-data connection) and repair the difference: what it lost is subscribed again (its
        subscribers get a ``Gap`` marker when it is back), what nobody wants is released.

        Blocks the calling thread up to ``timeout`` seconds; the result's ``complete`` is False if a
        connection did not answer in time (then nothing was repaired there). The client also does
        this by itself after every reconnect.
        """
        shards = [shard for shard in self._market_data.connections() if shard.is_open]
        began = [(shard, shard.list_subscriptions()) for shard in shards]
        deadline = time.monotonic() + timeout
        results = [_wait_check(shard, since, deadline) for shard, since in began]
        return SubscriptionCheck(
            connections=len(shards),
            complete=all(r is not None and r.complete for r in results),
            missing=tuple(t for r in results if r is not None for t in r.missing),
            released=tuple(t for r in results if r is not None for t in r.extra),
        )

    @property
    def gap_recovery(self) -> bool:
        """Are account streams' gaps filled from the unary API (the client has a REST URL)?"""
        return self._rest is not None

    def unary(self, method: Unary | str, request: Any) -> Any:
        """Call a unary method of the API over REST (those the client uses to fill gaps:
        :class:`~rxinvest.wire.Unary`) with ``request``, its request class; returns the decoded
        answer. Blocks the calling thread (retries included, bounded). Raises
        :class:`~rxinvest.errors.ConfigurationError` when the client has no REST URL, else as
        :meth:`rxinvest.transport.RestClient.call`."""
        if self._rest is None:
            raise ConfigurationError("this client has no REST API: connect with rest_url=")
        return self._rest.call(Unary(method), request)

    @property
    def deliveries(self) -> tuple[DeliveryStats, ...]:
        """How each live subscription's delivery stands: backlog, delivered, dropped, conflated ...

        A subscriber that lags shows here first: its ``backlog`` grows (and, past a market-data
        source's ``backlog`` limit, its ``dropped`` count).
        """
        boxes = {box: None for connection in self._connections() for box in connection.subscribers()}
        boxes.update(dict.fromkeys(self._statuses.mailboxes()))
        return tuple(box.stats() for box in boxes)

    def close(self) -> None:
        """Close every stream; subscribers complete. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            accounts = list(self._accounts.values())
        if self._rest is not None:
            self._rest.close()  # a recovery waiting to retry gives up at once
        self._market_data.close()
        for connection in accounts:
            connection.close()
        self._statuses.complete()
        if self._own_scheduler:
            for pool in (self.scheduler, self._account_scheduler):
                if isinstance(pool, DeliveryScheduler):
                    pool.shutdown()
        for hook in self._on_close:
            hook()

    # --- plumbing used by the services ---------------------------------------------------------------

    def _factory(self, stream: Stream) -> ListenerTransport:
        url = self.base_url + stream.path

        factory = self._transport_factory or self._websocket

        def make(listener: Listener) -> Transport:
            tap = self._tap  # read now: watch() may have added one since
            if tap is not None:
                return tap(listener, stream=stream, url=url, factory=factory)
            return factory(listener, stream=stream, url=url)

        return make

    def watch(self, tap: Tap) -> None:
        """Add ``tap`` (a :class:`~rxinvest.transport.Tap`, such as a recorder) to the stream
        connections opened from now on, nearer the connection than any tap given earlier.
        Raises :class:`~rxinvest.errors.ConfigurationError` once a stream connection is open
        (its traffic would be seen in part)."""
        with self._lock:
            if self._accounts or self._market_data.connections():
                raise ConfigurationError("add taps before the first subscription: a stream is open")
            inner = self._tap
            if inner is None:
                self._tap = tap
                return

            def both(listener: Listener, *, stream: Stream, url: str, factory: TransportFactory) -> Transport:
                def through_inner(listener: Listener, *, stream: Stream, url: str) -> Transport:
                    return inner(listener, stream=stream, url=url, factory=factory)

                return tap(listener, stream=stream, url=url, factory=through_inner)

            self._tap = both

    def _websocket(self, listener: Listener, *, stream: Stream, url: str) -> Transport:
        return WebSocketTransport(
            url,
            listener,
            token=self._token.reveal(),
            dialect=self.dialect,
            app_name=self._app_name,
            open_timeout=self._open_timeout,
            name=f"rxinvest-reader-{stream.value}",
        )

    def _source(
        self,
        attach: Callable[[Mailbox], Callable[[], None]],
        policy: Policy,
        *,
        key: Callable[[Any], Hashable] | None = None,
        limit: int | None = None,
        name: str,
        accounts: bool = False,
    ) -> Source[Any]:
        """A :class:`Source` whose every subscription gets a mailbox, attached to a connection."""
        scheduler = self._account_scheduler if accounts else self.scheduler

        def make(markers: bool) -> Callable[..., abc.DisposableBase]:
            def subscribe(
                observer: abc.ObserverBase[Any], _: abc.SchedulerBase | None = None
            ) -> abc.DisposableBase:
                mailbox = Mailbox(
                    observer, scheduler, policy=policy, key=key, limit=limit, markers=markers, name=name
                )
                try:
                    if self._closed:
                        raise ClientClosedError("the client is closed")
                    detach = attach(mailbox)
                except RxInvestError as exc:  # closed, or refused by the session: tell the subscriber now
                    observer.on_error(exc)
                    return Disposable()
                return Disposable(detach)

            return subscribe

        return Source(make)

    def _market_source(
        self,
        topics: tuple[Topic, ...],
        *,
        strict: object,
        conflate: object = False,
        key: Callable[[Any], Hashable] | None = None,
        backlog: object = DEFAULT_BACKLOG,
    ) -> Source[Any]:
        """A market-data source of ``topics``: conflated by ``key`` (the newest per key waits) or
        every event, up to ``backlog`` waiting."""
        strict = _flag(strict, "strict")
        limit = _backlog(backlog)
        conflated = _flag(conflate, "conflate") and key is not None
        pool = self._market_data

        def attach(mailbox: Mailbox) -> Callable[[], None]:
            pool.add(topics, mailbox, strict=strict)
            return lambda: pool.remove(topics, mailbox)

        name = f"{topics[0].kind.value} of {', '.join(t.instrument_id for t in topics[:3])}" + (
            " ..." if len(topics) > 3 else ""
        )
        if conflated:
            return self._source(attach, Policy.LATEST, key=key, name=name)
        return self._source(attach, Policy.ALL, limit=limit, name=name)

    def _account_source(
        self,
        stream: Stream,
        accounts: object,
        *,
        strict: object,
        with_initial_positions: object = True,
        since: object = None,
    ) -> Source[Any]:
        """An account-stream source: every event, never dropped, on the account delivery pool."""
        accounts = _names(accounts, "account id")
        strict = _flag(strict, "strict")
        options: dict[str, Any] = {}
        if since is not None:
            if not isinstance(since, datetime) or since.utcoffset() is None:
                raise ConfigurationError(f"since must be an aware datetime or None, not {since!r}")
            options["since"] = since
        if stream is Stream.POSITIONS:
            options["with_initial_positions"] = _flag(with_initial_positions, "with_initial_positions")
        key = (stream, accounts, tuple(sorted(options.items())))

        def attach(mailbox: Mailbox) -> Callable[[], None]:
            for _ in range(3):  # twice at most: a connection found closing is forgotten, then a new one
                with self._lock:
                    if self._closed:
                        raise ClientClosedError("the client is closed")
                    connection = self._accounts.get(key)
                    if connection is None:
                        session = AccountSession(
                            stream, accounts, dialect=self.dialect, ping_delay=self._ping_delay, **options
                        )
                        recovery = None if self._rest is None else AccountRecovery(self._rest.call, stream)
                        connection = AccountConnection(
                            self._factory(stream),
                            self._statuses.emit,
                            session,
                            self._forget(key),
                            recovery=recovery,
                        )
                        self._accounts[key] = connection
                if connection.add(mailbox, strict=strict):
                    return lambda: connection.remove(mailbox)
                self._forget(key)(connection)  # its last subscriber left meanwhile: a new one
            raise ClientClosedError("the client is closing")  # only its close retires new connections

        name = f"{stream.value} of {', '.join(accounts)}"
        return self._source(attach, Policy.ALL, name=name, accounts=True)

    def _forget(self, key: tuple[Any, ...]) -> Callable[[AccountConnection], None]:
        def forget(connection: AccountConnection) -> None:
            with self._lock:
                if self._accounts.get(key) is connection:
                    del self._accounts[key]

        return forget


class MarketData:
    """Market-data sources. All share the client's one MarketDataStream connection.

    Each source is a :class:`Source`: subscribing subscribes on the server (the first subscriber of
    an instrument and parameter set sends SUBSCRIBE, the last to dispose sends UNSUBSCRIBE; identical
    requests are shared). ``ids`` is one instrument id or several: FIGI, instrument uid or
    ``TICKER_CLASSCODE`` (``"SBER_TQBR"``).

    Every argument is checked at the call: a bad one raises
    :class:`~rxinvest.errors.ConfigurationError` saying what is allowed, and nothing is subscribed.

    Refusals: if the API refuses an instrument, the source goes on with the others; the refusal
    appears on ``client.statuses`` (and as a :class:`~rxinvest.derived.Refused` marker with
    ``with_markers()``). The subscriber gets ``on_error(SubscriptionRejectedError)`` (status,
    instrument, tracking id) when every instrument of the source is refused, or at the first
    refusal with ``strict=True``. Nobody else is affected.

    Backpressure: books and last prices are conflated by default (a lagging subscriber gets the
    newest of each instrument). Every other source keeps every event, up to ``backlog`` waiting
    (default :data:`DEFAULT_BACKLOG`; None: unbounded); past it the oldest waiting events are
    dropped, counted, logged, and shown as a :class:`~rxinvest.derived.Gap` with ``with_markers()``.

    ``on_next`` runs on the client's delivery scheduler, one call at a time per subscription.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def order_books(
        self,
        ids: str | Iterable[str],
        depth: int = 20,
        *,
        book_type: m.OrderBookType | str = m.OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED,
        conflate: bool = True,
        strict: bool = False,
        backlog: int | None = DEFAULT_BACKLOG,
    ) -> Source[m.OrderBook]:
        """Order-book snapshots of ``depth`` levels a side (1, 10, 20, 30, 40 or 50).

        ``book_type`` is an ``OrderBookType`` or its name (``"EXCHANGE"``). With ``conflate`` (the
        default) a subscriber that lags gets the newest book of each instrument, never a stale
        backlog; without, every book, up to ``backlog``.
        """
        book_type = member_of(m.OrderBookType, book_type, "book_type")
        topics = tuple(Topic(Kind.ORDER_BOOKS, i, depth=depth, order_book_type=book_type) for i in _ids(ids))
        return self._client._market_source(
            topics, strict=strict, conflate=conflate, key=_book_key, backlog=backlog
        )

    def candles(
        self,
        ids: str | Iterable[str],
        interval: m.SubscriptionInterval | str | timedelta,
        *,
        waiting_close: bool = False,
        source: m.CandleSourceFilter | str | None = None,
        strict: bool = False,
        backlog: int | None = DEFAULT_BACKLOG,
    ) -> Source[m.Candle]:
        """Candles of ``interval``: a ``SubscriptionInterval``, its name (``"ONE_MINUTE"``), a length
        (``"1m"``, ``"5m"``, ``"1h"``, ``"1d"``, ``"1w"``, ``"1mo"``) or a ``timedelta`` of one.

        Without ``waiting_close`` the forming candle is sent again as it changes (same ``time``) and
        closed ones may be corrected later: upsert by (instrument_uid, interval, time).
        ``waiting_close`` is per instrument and interval on the stream: subscribing both ways at once
        raises ConfigurationError. ``source`` is a ``CandleSourceFilter``, its name or None.
        """
        interval = interval_of(interval)
        candle_source = None if source is None else member_of(m.CandleSourceFilter, source, "source")
        topics = tuple(
            Topic(
                Kind.CANDLES,
                i,
                interval=interval,
                waiting_close=_flag(waiting_close, "waiting_close"),
                candle_source_type=candle_source,
            )
            for i in _ids(ids)
        )
        self._client._market_data.check(topics)
        return self._client._market_source(topics, strict=strict, backlog=backlog)

    def trades(
        self,
        ids: str | Iterable[str],
        *,
        source: m.TradeSourceType | str = m.TradeSourceType.TRADE_SOURCE_UNSPECIFIED,
        with_open_interest: bool = False,
        strict: bool = False,
        backlog: int | None = DEFAULT_BACKLOG,
    ) -> Source[m.Trade | m.OpenInterest]:
        """Anonymous market trades (quantity in lots); with ``with_open_interest``, also the open
        interest of futures. ``source`` is a ``TradeSourceType`` or its name (``"EXCHANGE"``)."""
        trade_source = member_of(m.TradeSourceType, source, "source")
        open_interest = _flag(with_open_interest, "with_open_interest")
        topics = tuple(
            Topic(Kind.TRADES, i, trade_source=trade_source, with_open_interest=open_interest)
            for i in _ids(ids)
        )
        return self._client._market_source(topics, strict=strict, backlog=backlog)

    def last_prices(
        self,
        ids: str | Iterable[str],
        *,
        conflate: bool = True,
        strict: bool = False,
        backlog: int | None = DEFAULT_BACKLOG,
    ) -> Source[m.LastPrice]:
        """Last trade prices; with ``conflate`` a lagging subscriber gets the newest price of each
        instrument, without it every price, up to ``backlog``."""
        topics = tuple(Topic(Kind.LAST_PRICES, i) for i in _ids(ids))
        return self._client._market_source(
            topics, strict=strict, conflate=conflate, key=_uid_key, backlog=backlog
        )

    def of_topics(
        self,
        topics: Iterable[Topic],
        *,
        conflate: bool = False,
        strict: bool = False,
        backlog: int | None = DEFAULT_BACKLOG,
    ) -> Source[Any]:
        """A source of any :class:`~rxinvest.protocol.Topic` values, of one kind or several (what
        a bus gateway holds for its consumers). ``conflate`` keeps the newest event per instrument
        and kind for a lagging subscriber; otherwise every event, up to ``backlog``."""
        topics = tuple(dict.fromkeys(topics))
        if not topics or not all(isinstance(t, Topic) for t in topics):
            raise ConfigurationError(f"expected a non-empty iterable of Topic values, not {topics!r}")
        self._client._market_data.check(topics)
        return self._client._market_source(
            topics, strict=strict, conflate=conflate, key=_kind_key, backlog=backlog
        )

    def trading_statuses(
        self, ids: str | Iterable[str], *, strict: bool = False, backlog: int | None = DEFAULT_BACKLOG
    ) -> Source[m.TradingStatus]:
        """Trading-status changes (the current status arrives first)."""
        topics = tuple(Topic(Kind.INFO, i) for i in _ids(ids))
        return self._client._market_source(topics, strict=strict, backlog=backlog)


class Orders:
    """Order sources (OrderStateStream, and the deprecated TradesStream). Nothing is ever dropped,
    however far a subscriber lags (a growing backlog is logged and counted, never cut).

    ``since`` (an aware datetime; every account source takes it) resumes a stream that ended then:
    each account's first grant is a gap from ``since``, marked (``Gap``) and, with gap recovery,
    filled from the unary API (what changed since then, then ``Recovered``) before the live events.

    ``accounts`` is one account id or several. If the API refuses an account, the source goes on
    with the others (the refusal is on ``client.statuses``, and a marker with ``with_markers()``);
    the subscriber gets ``on_error`` (``PermissionDeniedError`` for a token without rights, else
    ``SubscriptionRejectedError``) when every account is refused, or at the first refusal with
    ``strict=True``. ``on_next`` runs on the client's account delivery pool, one call at a time per
    subscription, never behind market data.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def order_states(
        self, accounts: str | Sequence[str], *, strict: bool = False, since: datetime | None = None
    ) -> Source[m.OrderState]:
        """Every status change of every order of ``accounts``."""
        return self._client._account_source(Stream.ORDER_STATE, accounts, strict=strict, since=since)

    def order_trades(
        self, accounts: str | Sequence[str], *, strict: bool = False, since: datetime | None = None
    ) -> Source[m.OrderTrades]:
        """Fills, order by order (TradesStream: deprecated by the API in favour of order_states)."""
        return self._client._account_source(Stream.TRADES, accounts, strict=strict, since=since)


class Operations:
    """Position and portfolio sources (PositionsStream, PortfolioStream). Nothing is ever dropped;
    refusals, delivery and ``since`` are as for :class:`Orders`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def positions(
        self,
        accounts: str | Sequence[str],
        *,
        with_initial_positions: bool = True,
        strict: bool = False,
        since: datetime | None = None,
    ) -> Source[m.PositionsResponse | m.PositionData]:
        """Position changes (``PositionData``), after a full ``PositionsResponse`` per account when
        ``with_initial_positions``."""
        return self._client._account_source(
            Stream.POSITIONS,
            accounts,
            strict=strict,
            with_initial_positions=with_initial_positions,
            since=since,
        )

    def portfolio(
        self, accounts: str | Sequence[str], *, strict: bool = False, since: datetime | None = None
    ) -> Source[m.PortfolioResponse]:
        """Full portfolio snapshots, one account per event, when something changes."""
        return self._client._account_source(Stream.PORTFOLIO, accounts, strict=strict, since=since)

    def reconciled_positions(
        self,
        accounts: str | Sequence[str],
        *,
        timeout: float = 5.0,
        money_tolerance: Decimal | None = None,
        scheduler: abc.SchedulerBase | None = None,
    ) -> Observable[PositionCheck]:
        """:func:`rxinvest.ops.reconcile_positions` of ``accounts``' three live streams: order
        states, positions (with the initial snapshot) and portfolio, each with markers. Each
        subscription opens its own sources (shared connections, as any source)."""
        return reconcile_positions(
            self._client.orders.order_states(accounts).with_markers(),
            self.positions(accounts, with_initial_positions=True).with_markers(),
            portfolio=self.portfolio(accounts).with_markers(),
            timeout=timeout,
            money_tolerance=money_tolerance,
            scheduler=scheduler,
        )


def _wait_check(shard: MarketDataConnection, since: datetime, deadline: float) -> Checked | None:
    """The check of ``shard`` begun at ``since``, or None if the monotonic ``deadline`` passes first."""
    with shard.checked:
        while (left := deadline - time.monotonic()) > 0:
            done = next((c for c in shard.checks if c.since >= since), None)
            if done is not None:
                return done
            shard.checked.wait(timeout=left)  # notified when a check ends
    return None


def _book_key(book: m.OrderBook) -> tuple[str, int]:
    return (book.instrument_uid, book.depth)


def _uid_key(event: m.LastPrice) -> str:
    return event.instrument_uid


def _kind_key(event: Any) -> tuple[type, str]:
    return (type(event), event.instrument_uid)
