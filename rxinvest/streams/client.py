"""The Rx face of rxinvest: a :class:`Client` whose sources are Observables of typed events.

Threads: each stream connection has one reader thread (websocket-client) that decodes and routes
but never runs user code. Events reach subscribers on the client's *delivery scheduler*: by default
a small pool of ``rxinvest-delivery`` threads, where each subscription's ``on_next`` calls never
overlap and keep arrival order, while a slow subscriber holds up only itself. Pass
``scheduler=EventLoopScheduler()`` to run every pipeline on one thread, or
``AsyncIOThreadSafeScheduler(loop)`` to deliver on an asyncio loop (Jupyter).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxinvest import model as m
from rxinvest.errors import ClientClosedError, ConfigurationError, RxInvestError
from rxinvest.model.kinds import Kind
from rxinvest.protocol import AccountSession, MarketDataSession, Topic
from rxinvest.streams.connection import AccountConnection, ListenerTransport, MarketDataConnection
from rxinvest.streams.delivery import Broadcast, DeliveryScheduler, Mailbox, Policy
from rxinvest.streams.events import ConnectionStatus, SubscriptionStatus
from rxinvest.transport import Listener, Transport, TransportFactory, WebSocketTransport
from rxinvest.wire import Dialect, Stream

__all__ = ["Client", "MarketData", "Operations", "Orders"]


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


def _ids(ids: str | Iterable[str]) -> tuple[str, ...]:
    values = (ids,) if isinstance(ids, str) else tuple(ids)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise ConfigurationError(f"expected one instrument id or a non-empty list of them, got {ids!r}")
    return tuple(dict.fromkeys(values))


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
        ping_delay: float | None = None,
        scheduler: abc.SchedulerBase | None = None,
        open_timeout: float = 10.0,
        transport_factory: TransportFactory | None = None,
        on_close: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.dialect = Dialect.parse(dialect).value
        self._token = _Secret(token)
        self._app_name = app_name
        self._open_timeout = open_timeout
        self._transport_factory = transport_factory
        self._own_scheduler = scheduler is None
        self.scheduler: abc.SchedulerBase = scheduler or DeliveryScheduler()
        self._on_close = list(on_close)
        #: The embedded simulator when connected with ``target="sim"`` (else None).
        self.sim: Any = None
        self._statuses = Broadcast(self.scheduler)
        self._lock = threading.Lock()
        self._closed = False
        self._market_data = MarketDataConnection(
            self._factory(Stream.MARKET_DATA),
            self._statuses.emit,
            MarketDataSession(dialect=self.dialect, ping_delay=ping_delay),
        )
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
        with self._lock:
            conns = [self._market_data, *self._accounts.values()]
        return sum(1 for c in conns if c.is_open)

    def close(self) -> None:
        """Close every stream; subscribers complete. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = [self._market_data, *self._accounts.values()]
        for connection in conns:
            connection.close()
        self._statuses.complete()
        if self._own_scheduler and isinstance(self.scheduler, DeliveryScheduler):
            self.scheduler.shutdown()
        for hook in self._on_close:
            hook()

    # --- plumbing used by the services ---------------------------------------------------------------

    def _factory(self, stream: Stream) -> ListenerTransport:
        url = self.base_url + stream.path

        def make(listener: Listener) -> Transport:
            if self._transport_factory is not None:
                return self._transport_factory(listener, stream=stream, url=url)
            return WebSocketTransport(
                url,
                listener,
                token=self._token.reveal(),
                dialect=self.dialect,
                app_name=self._app_name,
                open_timeout=self._open_timeout,
                name=f"rxinvest-reader-{stream.value}",
            )

        return make

    def _source(
        self,
        attach: Callable[[Mailbox], Callable[[], None]],
        policy: Policy,
        key: Callable[[Any], Hashable] | None = None,
    ) -> Observable[Any]:
        """An Observable whose every subscription gets a mailbox, attached to a connection."""

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            mailbox = Mailbox(observer, self.scheduler, policy=policy, key=key)
            try:
                if self._closed:
                    raise ClientClosedError("the client is closed")
                detach = attach(mailbox)
            except RxInvestError as exc:  # closed, or refused by the session: tell the subscriber now
                observer.on_error(exc)
                return Disposable()
            return Disposable(detach)

        return reactivex.create(subscribe)

    def _market_source(
        self, topics: tuple[Topic, ...], policy: Policy, key: Callable[[Any], Hashable] | None = None
    ) -> Observable[Any]:
        connection = self._market_data

        def attach(mailbox: Mailbox) -> Callable[[], None]:
            connection.add(topics, mailbox)
            return lambda: connection.remove(topics, mailbox)

        return self._source(attach, policy, key)

    def _account_source(self, stream: Stream, accounts: Sequence[str], **options: bool) -> Observable[Any]:
        accounts = tuple(dict.fromkeys(accounts))
        if not accounts or not all(isinstance(a, str) and a for a in accounts):
            raise ConfigurationError(f"expected a non-empty list of account ids, got {accounts!r}")
        key = (stream, accounts, tuple(sorted(options.items())))

        def attach(mailbox: Mailbox) -> Callable[[], None]:
            with self._lock:
                if self._closed:
                    raise ClientClosedError("the client is closed")
                connection = self._accounts.get(key)
                if connection is None:
                    session = AccountSession(
                        stream, accounts, dialect=self.dialect, ping_delay=self._ping_delay, **options
                    )
                    connection = AccountConnection(
                        self._factory(stream), self._statuses.emit, session, self._forget(key)
                    )
                    self._accounts[key] = connection
            connection.add(mailbox)
            return lambda: connection.remove(mailbox)

        return self._source(attach, Policy.ALL)

    def _forget(self, key: tuple[Any, ...]) -> Callable[[AccountConnection], None]:
        def forget(connection: AccountConnection) -> None:
            with self._lock:
                if self._accounts.get(key) is connection:
                    del self._accounts[key]

        return forget


class MarketData:
    """Market-data sources. All share the client's one MarketDataStream connection.

    Each source is an Observable: subscribing subscribes on the server (the first subscriber of an
    instrument and parameter set sends SUBSCRIBE, the last to dispose sends UNSUBSCRIBE; identical
    requests are shared). ``ids`` is one instrument id or several: FIGI, instrument uid or
    ``TICKER_CLASSCODE`` (``"SBER_TQBR"``). If the API refuses an instrument, the subscribers of
    that instrument get ``on_error(SubscriptionRejectedError)`` (status, instrument, tracking id);
    nobody else is affected. Confirmations appear on ``client.statuses``.

    ``on_next`` runs on the client's delivery scheduler, one call at a time per subscription.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def order_books(
        self,
        ids: str | Iterable[str],
        depth: int = 20,
        *,
        book_type: m.OrderBookType = m.OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED,
        conflate: bool = True,
    ) -> Observable[m.OrderBook]:
        """Order-book snapshots of ``depth`` levels a side (1, 10, 20, 30, 40 or 50; another depth
        raises ConfigurationError).

        With ``conflate`` (the default) a subscriber that lags gets the newest book of each
        instrument, never a stale backlog; without, every book, however far behind.
        """
        topics = tuple(Topic(Kind.ORDER_BOOKS, i, depth=depth, order_book_type=book_type) for i in _ids(ids))
        if not conflate:
            return self._client._market_source(topics, Policy.ALL)
        return self._client._market_source(topics, Policy.LATEST, key=_book_key)

    def candles(
        self,
        ids: str | Iterable[str],
        interval: m.SubscriptionInterval | str,
        *,
        waiting_close: bool = False,
        source: m.CandleSourceFilter | None = None,
    ) -> Observable[m.Candle]:
        """Candles of ``interval``. Without ``waiting_close`` the forming candle is sent again as it
        changes (same ``time``) and closed ones may be corrected later: upsert by
        (instrument_uid, interval, time). ``waiting_close`` is per instrument and interval on the
        stream: subscribing both ways at once raises ConfigurationError."""
        interval = _interval(interval)
        topics = tuple(
            Topic(Kind.CANDLES, i, interval=interval, waiting_close=waiting_close, candle_source_type=source)
            for i in _ids(ids)
        )
        self._client._market_data.check(topics)
        return self._client._market_source(topics, Policy.ALL)

    def trades(
        self,
        ids: str | Iterable[str],
        *,
        source: m.TradeSourceType = m.TradeSourceType.TRADE_SOURCE_UNSPECIFIED,
        with_open_interest: bool = False,
    ) -> Observable[m.Trade | m.OpenInterest]:
        """Anonymous market trades (quantity in lots); with ``with_open_interest``, also the open
        interest of futures. Every trade is delivered, however slow the subscriber."""
        topics = tuple(
            Topic(Kind.TRADES, i, trade_source=source, with_open_interest=with_open_interest)
            for i in _ids(ids)
        )
        return self._client._market_source(topics, Policy.ALL)

    def last_prices(self, ids: str | Iterable[str], *, conflate: bool = True) -> Observable[m.LastPrice]:
        """Last trade prices; with ``conflate`` a lagging subscriber gets the newest price of each
        instrument, without it every price."""
        topics = tuple(Topic(Kind.LAST_PRICES, i) for i in _ids(ids))
        if not conflate:
            return self._client._market_source(topics, Policy.ALL)
        return self._client._market_source(topics, Policy.LATEST, key=_uid_key)

    def trading_statuses(self, ids: str | Iterable[str]) -> Observable[m.TradingStatus]:
        """Trading-status changes (the current status arrives first)."""
        topics = tuple(Topic(Kind.INFO, i) for i in _ids(ids))
        return self._client._market_source(topics, Policy.ALL)


class Orders:
    """Order sources (OrderStateStream, and the deprecated TradesStream). Nothing is ever dropped.

    If the API refuses an account, subscribers get ``on_error`` (``PermissionDeniedError`` for a
    token without rights, else ``SubscriptionRejectedError``). ``on_next`` runs on the client's
    delivery scheduler, one call at a time per subscription.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def order_states(self, accounts: str | Sequence[str]) -> Observable[m.OrderState]:
        """Every status change of every order of ``accounts``."""
        return self._client._account_source(Stream.ORDER_STATE, _accounts(accounts))

    def order_trades(self, accounts: str | Sequence[str]) -> Observable[m.OrderTrades]:
        """Fills, order by order (TradesStream: deprecated by the API in favour of order_states)."""
        return self._client._account_source(Stream.TRADES, _accounts(accounts))


class Operations:
    """Position and portfolio sources (PositionsStream, PortfolioStream). Nothing is ever dropped."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def positions(
        self, accounts: str | Sequence[str], *, with_initial_positions: bool = True
    ) -> Observable[m.PositionsResponse | m.PositionData]:
        """Position changes (``PositionData``), after a full ``PositionsResponse`` per account when
        ``with_initial_positions``."""
        return self._client._account_source(
            Stream.POSITIONS, _accounts(accounts), with_initial_positions=with_initial_positions
        )

    def portfolio(self, accounts: str | Sequence[str]) -> Observable[m.PortfolioResponse]:
        """Full portfolio snapshots, one account per event, when something changes."""
        return self._client._account_source(Stream.PORTFOLIO, _accounts(accounts))


def _accounts(accounts: str | Sequence[str]) -> tuple[str, ...]:
    return (accounts,) if isinstance(accounts, str) else tuple(accounts)


def _interval(interval: m.SubscriptionInterval | str) -> m.SubscriptionInterval:
    if isinstance(interval, str):
        name = (
            interval
            if interval.startswith("SUBSCRIPTION_INTERVAL_")
            else f"SUBSCRIPTION_INTERVAL_{interval.upper()}"
        )
        try:
            interval = m.SubscriptionInterval[name]
        except KeyError:
            raise ConfigurationError(f"unknown candle interval {interval!r}") from None
    if interval is m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED:
        raise ConfigurationError("a candle interval is required")
    return interval


def _book_key(book: m.OrderBook) -> tuple[str, int]:
    return (book.instrument_uid, book.depth)


def _uid_key(event: m.LastPrice) -> str:
    return event.instrument_uid
