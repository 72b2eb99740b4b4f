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

__all__: list[str] = []
