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
from typing import TypeVar

from reactivex import Observable

__all__ = ["require_markers"]

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
