"""An asyncio event loop on a daemon thread of its own, and thread-safe calls into it.

The simulator runs everything (server, market clock, connections) on one such loop, so its state
has a single owner; users call in from any thread through :meth:`LoopThread.call`.

Rules:

* :meth:`LoopThread.start` returns once the main coroutine has called :meth:`LoopThread.ready`; if
  it fails first, ``start`` raises its error (so a ConfigurationError reaches the caller as one);
  if it is not ready within the timeout, ``RuntimeError``.
* The main coroutine runs until :attr:`LoopThread.stopping` is set (by :meth:`LoopThread.stop`),
  then cleans up and returns; ``stop`` waits for that, then for the thread.
* :meth:`LoopThread.call` runs a plain function on the loop and waits for its result; it raises
  ``RuntimeError`` when the loop is not running.
* Every wait is bounded by the ``timeout`` (seconds) the caller passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

_T = TypeVar("_T")


class LoopThread:
    """Runs ``main(self)`` on a new event loop in a daemon thread named ``name``."""

    def __init__(self, main: Callable[[LoopThread], Coroutine[Any, Any, None]], *, name: str) -> None:
        self._main = main
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def stopping(self) -> asyncio.Event:
        """Set when the loop should stop (the main coroutine awaits it)."""
        assert self._stopping is not None, "only the main coroutine waits for it, once it runs"
        return self._stopping

    def ready(self) -> None:
        """Called by the main coroutine once it serves: lets :meth:`start` return."""
        self._ready.set()

    def start(self, timeout: float) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        ready = self._ready.wait(timeout)
        if self._error is not None:
            raise self._error
        if not ready:
            raise RuntimeError(f"the simulator did not start within {timeout} s")

    def stop(self, timeout: float) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may have stopped already
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout)
        self._thread.join(timeout)
        self._loop = None

    def call(self, function: Callable[[], _T], timeout: float) -> _T:
        """``function()`` run on the loop, from any other thread."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the simulator is not running")

        async def run() -> _T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        await self._main(self)

    async def _stop(self) -> None:
        self.stopping.set()
