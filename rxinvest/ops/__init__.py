"""Pipeable operators over rxinvest's event streams: ``source.pipe(ops.to_bars(...))``.

As in ``reactivex.operators``: each public operator is a thin function defined here, whose docstring
has a one-line summary, a marble diagram, its arguments, what reaches ``on_error``, and an example
with ``pipe``; it imports its implementation lazily from a private module (``ops/_bars.py`` ...).
Every operator returns ``Callable[[Observable[A]], Observable[B]]``, keeps its state per
subscription, takes a ``scheduler=`` keyword where time matters (resolved at subscribe time), and
leaves the logic to a pure fold in :mod:`rxinvest.fold`, so the operator is a short adapter.

It may import :mod:`rxinvest.fold`, :mod:`rxinvest.derived`, :mod:`rxinvest.model`,
:mod:`rxinvest.errors` and reactivex: operators see events, never frames, sessions or sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

from reactivex import Observable, abc

from rxinvest.derived import Bar, BookDiff, BookHealth, LateTrade, PositionCheck, Quote
from rxinvest.fold.bars import Interval
from rxinvest.model import OrderBook, TradingStatus

__all__ = [
    "book_diffs",
    "book_health",
    "closed_candles",
    "healthy_books",
    "quotes",
    "reconcile_positions",
    "require_markers",
    "resample",
    "tick_bars",
    "to_bars",
    "to_books",
    "volume_bars",
]

_T = TypeVar("_T")


def require_markers(who: str) -> Callable[[Observable[_T]], Observable[_T]]:
    """Pass everything through, but only from a source with markers; else fail at once.

    An operator that must know about losses (a book rebuilt from snapshots, bars, a position
    ledger) starts with this guard, so it can never run silently on a source that hides its gaps:
    the first item of ``source.with_markers()`` is always a
    :class:`~rxinvest.derived.Subscribed` marker.

    ::

        with markers:   ---S---a---G---b---|
        require_markers("bars")
                        ---S---a---G---b---|

        plain source:   -------a-------b---|
        require_markers("bars")
                        -------#                ConfigurationError("bars must see gaps: ...")

    Args:
        who: the operator's name, for the error message.

    Returns:
        An operator function; ``on_error`` gets :class:`~rxinvest.errors.ConfigurationError` when
        the first item is not ``Subscribed`` (and the source is disposed), and the source's own
        errors otherwise.

    Example:
        >>> trades.with_markers().pipe(ops.require_markers("my_bars"), ...)  # doctest: +SKIP
    """
    from rxinvest.ops._markers import require_markers_

    return require_markers_(who)


def to_bars(
    interval: Interval,
    *,
    grace: timedelta = timedelta(seconds=1),
    emit: str = "closed",
    origin: timedelta | None = None,
    markers: bool = True,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Any]], Observable[Bar | LateTrade]]:
    """Trades to OHLCV bars of ``interval``, per instrument, closed at the right moment.

    A trade joins the bar ``[start, end)`` holding its exchange time (a trade at ``end`` opens the
    next bar); buckets are aligned to 00:00 UTC (plus ``origin``) for a ``timedelta``, to the calendar
    for a ``SubscriptionInterval``. A bar closes at the first trade of a later bar of its instrument,
    or when the exchange clock passes ``end + grace``, whichever comes first, so an idle instrument's
    bar closes too. The exchange clock is the latest trade's time plus the scheduler's time elapsed
    since (see :mod:`rxinvest.fold.bars`), right under virtual time and with a simulator faster than
    real time. A trade that comes late but within ``grace`` emits its bar again as ``CORRECTED``; a
    later one comes out as a :class:`~rxinvest.derived.LateTrade`: nothing is dropped silently. A
    :class:`~rxinvest.derived.Gap` marker closes the bars it concerns as ``incomplete``; no bar is
    made for an interval without trades. Completion flushes the open bars. Merge the instruments'
    trading statuses into the source (``trades.pipe(rx.merge(statuses))``) and a status that says an
    instrument stopped trading (a break, the close) closes its bar at once (``ClosedBy.SESSION``).

    ::

        trades:  --a(10:00:05)--b(10:00:40)---------c(10:01:07)-------------|
        to_bars(timedelta(minutes=1), grace=timedelta(seconds=1))
                 -------------------------------B1(a,b; NEXT_TRADE)--------B2(c)|
                 (an idle instrument: B1 closes at 10:01:01 by the timer instead)

    Args:
        interval: a positive ``timedelta`` or a ``SubscriptionInterval`` (weeks from Monday, months
            from the 1st).
        grace: how long after its end a bar waits for late trades (exchange clock).
        emit: ``"closed"`` (closed and corrected bars, LateTrades) or ``"updates"`` (every revision
            of the forming bar as well, in state ``FORMING``).
        origin: shifts the buckets of a ``timedelta`` interval (None: aligned to 00:00 UTC).
        markers: the source must have markers (``source.with_markers()``), so gaps are known: the
            default. ``False`` takes any stream of trades (a list, a recording) and trusts it whole.
        scheduler: the clock of the timer (else the subscribe-time scheduler, else a timer thread).

    Returns:
        An operator function. ``on_error`` gets ConfigurationError for a source without markers
        (unless ``markers=False``), DataIntegrityError for a trade without time or price, and the
        source's errors. Bad arguments raise ConfigurationError at the call.

    Example:
        >>> client.market_data.trades("SBER_TQBR").with_markers().pipe(   # doctest: +SKIP
        ...     ops.to_bars(timedelta(minutes=1))).subscribe(print)
    """
    from rxinvest.ops._bars import to_bars_

    return to_bars_(
        interval, grace=grace, emit=emit, origin=origin or timedelta(0), markers=markers, scheduler=scheduler
    )


def resample(interval: Interval) -> Callable[[Observable[Any]], Observable[Bar]]:
    """Bars, or the server's candles, to bars of a larger ``interval`` that is a multiple of theirs.

    Repeated updates of one bar or candle (same instrument and start) replace each other, never add
    up; the larger bar is the merge of the latest version of its parts. It closes when a part of a
    later bar of its instrument arrives, when its last part arrives closed, or at completion, and is
    emitted once as ``CLOSED``; a later change of one of its parts emits it again as ``CORRECTED``.

    ::

        1-minute bars:  --m0--m1--m2--m3--m4(closed)--m5--|
        resample(timedelta(minutes=5))
                        ------------------B(m0..m4)-------B(m5)|

    Args:
        interval: a ``timedelta`` or ``SubscriptionInterval``, a whole multiple of the parts'.

    Returns:
        An operator function; ``on_error`` gets DataIntegrityError for a part that does not fit in
        one bar of ``interval`` (not a multiple), and the source's errors. Markers and LateTrades
        are ignored.

    Example:
        >>> candles.pipe(ops.resample(timedelta(minutes=5))).subscribe(print)  # doctest: +SKIP
    """
    from rxinvest.ops._bars import resample_

    return resample_(interval)


def closed_candles(
    *, grace: timedelta = timedelta(seconds=3), scheduler: abc.SchedulerBase | None = None
) -> Callable[[Observable[Any]], Observable[Bar]]:
    """The server's candle stream (``waiting_close=False``) as each candle once, when it closes.

    Repeated updates of the forming candle replace each other; a candle closes, and is emitted once as
    a ``CLOSED`` :class:`~rxinvest.derived.Bar`, when the next candle of its series arrives or when
    the exchange clock passes its end + ``grace`` (see :mod:`rxinvest.fold.server_candles`); a later
    candle of a closed key whose values differ comes out as ``CORRECTED``. The exchange clock is
    estimated from the candles' ``last_trade_ts``.

    ::

        candles:  --c0--c0'--c0''--c1--c1'------------|
        closed_candles()
                  -------------------C0(c0'')----------C1(c1')|   (C1 by the timer, or at completion)

    Args:
        grace: how long after its interval's end a candle waits for updates.
        scheduler: the clock of the timer (else the subscribe-time scheduler, else a timer thread).

    Returns:
        An operator function; ``on_error`` gets DataIntegrityError for a candle without time or
        prices, and the source's errors.

    Example:
        >>> client.market_data.candles("SBER_TQBR", "1m").pipe(ops.closed_candles())  # doctest: +SKIP
    """
    from rxinvest.ops._bars import closed_candles_

    return closed_candles_(grace, scheduler)


def tick_bars(n: int) -> Callable[[Observable[Any]], Observable[Bar]]:
    """Trades to bars of exactly ``n`` trades each, per instrument (the last one flushed at completion).

    ::

        trades:  --a--b--c--d--e--|
        tick_bars(2)
                 -----B(ab)-B(cd)--B(e)|

    Returns:
        An operator function; ``on_error`` gets DataIntegrityError for a trade without time or price.
    """
    from rxinvest.fold.sized import TickBarFold
    from rxinvest.ops._bars import sized_

    return sized_(lambda: TickBarFold(n))


def volume_bars(lots: int, *, split: bool = True) -> Callable[[Observable[Any]], Observable[Bar]]:
    """Trades to bars of exactly ``lots`` lots each, per instrument: a trade that crosses a bar's
    threshold is split across bars (``split=False``: the bar overshoots instead).

    ::

        trades (lots):  --3--4--5--|
        volume_bars(5)
                        -----B(3+2)-B(2+3)-B(2)|

    Returns:
        An operator function; ``on_error`` gets DataIntegrityError for a trade without time or price.
    """
    from rxinvest.fold.sized import VolumeBarFold
    from rxinvest.ops._bars import sized_

    return sized_(lambda: VolumeBarFold(lots, split=split))


# --- order books -----------------------------------------------------------------------------------


def book_diffs(*, markers: bool = True) -> Callable[[Observable[Any]], Observable[BookDiff]]:
    """Book snapshots to what changed: one :class:`~rxinvest.derived.BookDiff` per snapshot.

    State is kept per book (instrument, depth, book type): books of different depths are never
    diffed against each other. The first snapshot of a book, and its first after a
    :class:`~rxinvest.derived.Gap`, is a full diff from an empty book with ``reset=True``. A level
    pushed beyond the visible depth by better ones is ``OUT_OF_VIEW``, not ``REMOVE`` (see
    :mod:`rxinvest.fold.books` for the rules). An unchanged book gives a diff with no changes (its
    header may still say something: ``time``, ``is_consistent``).

    ::

        books:   --S--b1------b2------G------b3-------|
        book_diffs()
                 -----D1(reset)--D12-----------D3(reset)--|

    Args:
        markers: the source must have markers (``books.with_markers()``), so gaps reset the diffs:
            the default. ``False`` takes any stream of books (a list, a recording).

    A malformed book (a side out of order, a level without a price) is skipped and logged, never
    the end of the stream: the instrument's next book comes as a ``reset`` diff.

    Returns:
        An operator function. ``on_error`` gets ConfigurationError for a source without markers,
        and the source's errors.

    Example:
        >>> client.market_data.order_books("SBER_TQBR", depth=20).with_markers().pipe(  # doctest: +SKIP
        ...     ops.book_diffs()).subscribe(print)
    """
    from rxinvest.ops._books import book_diffs_

    return book_diffs_(markers)


def to_books() -> Callable[[Observable[Any]], Observable[OrderBook]]:
    """Book diffs back to snapshots: the inverse of :func:`book_diffs`, so diffs can be stored.

    ::

        diffs:   --D1(reset)--D12--D23--|
        to_books()
                 --b1---------b2---b3---|

    Returns:
        An operator function; ``on_error`` gets BookIntegrityError for a diff that does not fit the
        book it follows (a recording with a hole: it must start again at a ``reset`` diff).

    Example:
        >>> stored_diffs.pipe(ops.to_books()).subscribe(print)  # doctest: +SKIP
    """
    from rxinvest.ops._books import to_books_

    return to_books_()


def book_health(
    *,
    stale_after: timedelta = timedelta(seconds=60),
    trading_statuses: Observable[TradingStatus] | None = None,
    markers: bool = True,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Any]], Observable[BookHealth]]:
    """Book snapshots to health events: one :class:`~rxinvest.derived.BookHealth` per change of an
    instrument's health, never one per book (edge-triggered).

    Problems (:class:`~rxinvest.derived.BookProblem`): crossed (best bid > best ask) or locked
    (equal), flagged ``expected`` during an auction when ``trading_statuses`` tells; the snapshot's
    ``is_consistent`` false; levels outside ``limit_down``/``limit_up``; stale (no snapshot for
    ``stale_after`` on the scheduler's clock while the instrument trades: a quiet instrument out of
    its session is not stale); reset after a gap; no book yet after subscribing (the API sends a
    book only once it changes). An event with no problems says the book is healthy again. Rules in
    :mod:`rxinvest.fold.health`.

    ::

        books:     --S--b1(ok)--b2(crossed)--b3(crossed)--b4(ok)-----------------|
        book_health(stale_after=10 s)
                   --N--H()-----H(CROSSED)---------------H()-----(10 s)H(STALE)--|

    Args:
        stale_after: how long without a snapshot a trading instrument's book is stale.
        trading_statuses: the instruments' trading statuses (``client.market_data.trading_statuses``):
            auctions make crossed books expected, and only trading instruments go stale.
        markers: the source must have markers (``books.with_markers()``): the default.
        scheduler: the clock of staleness (else the subscribe-time scheduler, else a timer thread).

    Returns:
        An operator function. ``on_error`` gets ConfigurationError for a source without markers,
        and the source's or the statuses' errors. Bad arguments raise ConfigurationError at the call.

    Example:
        >>> books = client.market_data.order_books("SBER_TQBR", depth=10).with_markers()  # doctest: +SKIP
        >>> books.pipe(ops.book_health(trading_statuses=client.market_data.trading_statuses("SBER_TQBR")))
    """
    from rxinvest.ops._books import book_health_

    return book_health_(stale_after, trading_statuses, scheduler, markers)


def healthy_books() -> Callable[[Observable[Any]], Observable[Any]]:
    """Only the snapshots without a problem of their own (see :func:`book_health`): not crossed,
    locked, inconsistent or priced outside the limits. A crossed book during an auction is dropped
    too: expected, but not a book to trade on. Anything else (markers) passes unchanged, so
    :func:`book_diffs` can follow.

    ::

        books:  --S--b1(ok)--b2(crossed)--b3(inconsistent)--b4(ok)--|
        healthy_books()
                --S--b1-----------------------------------b4------|

    Returns:
        An operator function; ``on_error`` gets the source's errors.

    Example:
        >>> books.pipe(ops.healthy_books()).subscribe(strategy)  # doctest: +SKIP
    """
    from rxinvest.ops._books import healthy_books_

    return healthy_books_()


def quotes(
    *, levels: int = 5, increments: Mapping[str, Decimal] | None = None
) -> Callable[[Observable[Any]], Observable[Quote]]:
    """Book snapshots to :class:`~rxinvest.derived.Quote`\\ s: best bid and ask, mid, spread (and in
    price increments where ``increments`` knows the instrument), microprice, the volume imbalance
    of the best ``levels`` levels, and the order-flow imbalance against the instrument's previous
    snapshot (None for the first and after a gap). Formulas on :class:`~rxinvest.derived.Quote`.

    ::

        books:   --b1--b2--G--b3--|
        quotes()
                 --q1--q2-----q3--|     (q1.ofi, q3.ofi: None)

    Args:
        levels: how many levels per side the imbalance sums (a positive int).
        increments: instrument uid -> minimum price increment, for ``spread_ticks``.

    Returns:
        An operator function; ``on_error`` gets the source's errors. Bad arguments raise
        ConfigurationError at the call.

    Example:
        >>> books.pipe(ops.quotes(levels=3)).subscribe(print)  # doctest: +SKIP
    """
    from rxinvest.ops._books import quotes_

    return quotes_(levels, increments)


# --- positions ----------------------------------------------------------------------------------------


def reconcile_positions(
    order_states: Observable[Any],
    positions: Observable[Any],
    *,
    portfolio: Observable[Any] | None = None,
    timeout: float | timedelta = 5.0,
    money_tolerance: Decimal | None = None,
    markers: bool = True,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[PositionCheck]:
    """What the fills say an account holds, against what the positions stream says, per (account,
    instrument) and per (account, currency): :class:`~rxinvest.derived.PositionCheck` events.

    Not a pipeable operator: it joins two or three sources. Fills come from the order states
    (cumulative ``lots_executed`` per order turned into deltas: repeats and older states give
    nothing; the first state of an order under another id is the same order by its
    ``order_request_id``; lots times ``lot_size`` make units); positions from the positions stream
    (``with_initial_positions``: its first snapshot is the base) or a portfolio snapshot. A fill
    without its position change, or the reverse, is ``PENDING`` until the other side comes; after
    ``timeout`` on the scheduler's clock a fill is ``MISSING`` and a change no fill explains
    (dividend, coupon, securities transfer) ``UNEXPLAINED``, each reported once; then the positions
    stream is taken as the truth. After a gap on either stream the ledger re-bases on the next
    snapshot instead of raising alarms. Money is reconciled only when ``money_tolerance`` is given:
    against the fills' amounts, within it. The order stream carries no commissions, so on the real
    API every commission beyond the tolerance would be a change no fill explains; the simulator
    charges none (``Decimal(0)`` reconciles it exactly).
    The same inputs give the same events; a duplicated input changes nothing. Rules in
    :mod:`rxinvest.fold.ledger`.

    ::

        order_states:  --S--o1(2 lots filled)---------------------------o2(1 lot)-----------|
        positions:     --S--P0---------------p(+20 units)---p(+5, no fill)--------------------|
        reconcile_positions(timeout=5 s)
                       -----M----PENDING-----MATCHED------PENDING-(5 s)UNEXPLAINED--PENDING-(5 s)MISSING|

    Args:
        order_states: ``client.orders.order_states(account).with_markers()``.
        positions: ``client.operations.positions(account).with_markers()`` (with initial positions).
        portfolio: optionally ``client.operations.portfolio(account).with_markers()``: a base when
            the positions stream has not given one (after a gap).
        timeout: seconds (or a ``timedelta``) a change may wait for its other side.
        money_tolerance: how far money may differ from the fills, or None (the default): money
            is not reconciled.
        markers: the sources must have markers, so gaps are known: the default.
        scheduler: the clock of the timeout (else the subscribe-time scheduler, else a timer thread).

    Returns:
        An Observable. ``on_error`` gets ConfigurationError for a source without markers and the
        sources' errors; it completes when every source has. Bad arguments raise
        ConfigurationError at the call.

    Example:
        >>> client.operations.reconciled_positions(account).subscribe(print)  # doctest: +SKIP
    """
    from rxinvest.ops._positions import reconcile_positions_

    return reconcile_positions_(
        order_states, positions, portfolio, timeout, money_tolerance, markers, scheduler
    )
