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

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from reactivex import Observable, abc

from rxinvest.derived import Bar, LateTrade
from rxinvest.fold.bars import Interval

__all__ = ["closed_candles", "require_markers", "resample", "tick_bars", "to_bars", "volume_bars"]

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
