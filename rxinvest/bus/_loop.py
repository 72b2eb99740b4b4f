"""An asyncio event loop on a thread of its own: where the bus runs NATS (nats-py is asyncio-only)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

_T = TypeVar("_T")


class LoopThread:
    """A daemon thread named ``name`` running :attr:`loop` from :meth:`start` to :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._background: set[asyncio.Future[Any]] = set()

    def start(self) -> None:
        self.thread.start()

    @property
    def here(self) -> bool:
        """Is the caller on the loop's thread?"""
        return threading.current_thread() is self.thread

    def run(self, work: Coroutine[Any, Any, _T], timeout: float) -> _T:
        """Run ``work`` on the loop from another thread and wait up to ``timeout`` seconds for it."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """On the loop: run ``work`` in the background, referenced until it ends."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def stop(self, finish: Coroutine[Any, Any, Any] | None = None, timeout: float = 5.0) -> None:
        """Run ``finish`` (closing NATS), cancel every task left, stop the loop and join the thread.
        Idempotent; from the loop's own thread it only schedules the stop."""
        if not self.thread.is_alive():
            if finish is not None:
                finish.close()
            return

        async def wind_down() -> None:
            if finish is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(finish, timeout)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.here:  # cannot wait for itself: wind down, then stop
            self.spawn(wind_down())
            self.loop.call_later(timeout + 2, self.loop.stop)
            return
        with contextlib.suppress(Exception):
            self.run(wind_down(), timeout + 2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.loop.close()
