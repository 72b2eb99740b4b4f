"""One accepted client of the simulator: the asyncio shell around its :class:`~rxinvest.sim.session.Session`.

A :class:`Connection` lives on the simulator's event loop. It reads the client's frames, decodes
them and hands the requests to its session; it sends what the session returns, carries out the
session's instructions (close, ping interval, burst) and applies the connection's faults on the way
out, as :mod:`rxinvest.sim.fault_injection` decides. Its pings, its fault clock and its burst are
tasks it owns; they end with the socket.

Rules:

* Every frame goes out through one queue, in order, and is counted for the faults; burst frames
  alone go straight to the socket. While a burst runs the market's steps send nothing (the burst
  stands in for them); answers to requests and pings still go out.
* Faults may be replaced while the connection runs (:meth:`Connection.set_faults`): the new ones
  count frames and time from then, the old ones' time faults that have not fired are cancelled, and
  a burst is stopped and started again as the new faults say.
* A client that lets more than ``_BACKLOG_LIMIT`` frames queue up is dropped (cut without a close).
* A stalled connection reads and sends nothing, pings included; a closed one sends nothing.
* A frame that does not decode as a request of the stream closes the stream with 4003.

What a connection needs from its server is the small :class:`Host` interface; the rest of the server
stays out of its reach.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import attrs
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from rxinvest.errors import DecodeError
from rxinvest.sim.broker import Event as AccountEvent
from rxinvest.sim.burst import Burst, burst_targets
from rxinvest.sim.fault_injection import FaultAction, FaultInjector, close_on_request, timetable
from rxinvest.sim.faults import Faults
from rxinvest.sim.market import StepEvents
from rxinvest.sim.session import Close, Output, PortfolioSnapshots, Session, SetPingDelay, StartBurst
from rxinvest.wire import Stream, decode_request

__all__ = ["Connection", "ConnectionInfo", "Host"]

log = logging.getLogger("rxinvest.sim")

_BACKLOG_LIMIT = 100_000  # frames queued for a client that does not read: then it is dropped


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


class Host(Protocol):
    """What a connection uses of its server."""

    emit_defaults: bool

    def frame(self, event: object, dialect: str) -> str:
        """``event`` encoded as a frame of ``dialect``."""

    def clock(self) -> datetime:
        """Simulated now."""

    def burst_frames(
        self, *, books: Mapping[str, int] | None = None, trades: Iterable[str] = (), dialect: str = "json"
    ) -> list[str]:
        """The frames of burst mode for these books and trades."""


class Connection:
    """One client connection on the simulator's loop (see the module docstring)."""

    def __init__(
        self,
        connection_id: int,
        ws: ServerConnection,
        session: Session,
        *,
        dialect: str,
        injector: FaultInjector,
        host: Host,
        ping_delay: float,
        opened: float,
    ) -> None:
        self.id = connection_id
        self.ws = ws
        self.session = session
        self.dialect = dialect
        self.opened = opened  # monotonic seconds: the time faults count from it
        self.ping_delay = ping_delay
        self.requests: list[object] = []  # what the client sent, decoded (or the DecodeError)
        self.closed = False
        self._host = host
        self._injector = injector
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []  # cancelled when the socket closes
        self._background: set[asyncio.Task[None]] = set()  # closes, which must outlive the socket
        self._pinger: asyncio.Task[None] | None = None
        self._fault_clock: asyncio.Task[None] | None = None  # the time faults in force
        self._burst: Burst | None = None

    @property
    def stream(self) -> Stream:
        return self.session.stream

    @property
    def faults(self) -> Faults:
        return self._injector.faults

    @property
    def bursting(self) -> bool:
        return self._burst is not None and self._burst.running

    # --- life cycle ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the client until the socket closes."""
        self._tasks = [asyncio.create_task(self._send_loop())]
        self._restart_fault_clock(since=self.opened)
        self._restart_pinger()
        try:
            async for message in self.ws:
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            for task in [*self._tasks, self._pinger, self._fault_clock]:
                if task is not None:
                    task.cancel()

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            id=self.id,
            stream=self.stream,
            dialect=self.dialect,
            access=self.session.access,
            requests=tuple(self.requests),
            subscriptions=tuple((s.kind, s.key) for s in self.session.subscriptions),
            accounts=self.session.accounts,
            frames_sent=self._injector.frames_sent,
            faults=self.faults,
            open=not self.closed,
        )

    def set_faults(self, faults: Faults) -> None:
        """Put ``faults`` in force on this open connection as if it opened with them now: counts
        and times from now, the old time faults cancelled, a stall lifted, a burst restarted (or
        stopped); a close fault with neither count nor time closes it now, its first request being
        past."""
        self._injector.replace(faults)
        self._restart_fault_clock(since=time.monotonic())
        if self._burst is not None:
            self._burst.stop()
        for item in self.session.set_faults(faults):
            if isinstance(item, StartBurst):
                self._start_burst()
        code = close_on_request(faults)
        if code is not None:
            self._spawn(self.close(code, "simulated fault"))

    def abort(self) -> None:
        """Cut the TCP connection without a close frame."""
        self.closed = True
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    async def close(self, code: int, reason: str) -> None:
        self.closed = True
        await self.ws.close(code, reason)

    # --- what the server brings ----------------------------------------------------------------------

    def on_step(self, events: StepEvents, now: float) -> None:
        """Send what a step of the market brings this stream (``now``: monotonic seconds)."""
        if self.closed or self._injector.stalled or self.bursting:
            return
        for item in self.session.on_step(events, now=now):
            if isinstance(item, Close):  # the idle timeout: from a step, so close in a task of its own
                self._spawn(self.close(item.code, item.reason))
            else:
                self.send(item)

    def on_account_events(self, events: Sequence[AccountEvent], portfolios: PortfolioSnapshots) -> None:
        for event in self.session.on_account_events(events, portfolios):
            self.send(event)

    # --- sending, with faults ------------------------------------------------------------------------

    def send(self, event: object) -> None:
        self.send_frame(self._host.frame(event, self.dialect))

    def send_frame(self, frame: str) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= _BACKLOG_LIMIT:
            log.warning("connection %d does not read: dropping it", self.id)
            self.abort()
            return
        self._queue.put_nowait(frame)

    async def _send_loop(self) -> None:
        injector = self._injector
        while True:
            frame = await self._queue.get()
            if injector.stalled:
                continue  # a stalled server sends nothing at all
            malformed = injector.malformed_before(frame)
            if malformed is not None:
                await self.ws.send(malformed)
            await self.ws.send(frame)
            action = injector.sent()
            if action is not None:
                await self._apply(action, self.faults)

    def _restart_fault_clock(self, *, since: float) -> None:
        """Run the time faults in force, counted from ``since`` (monotonic seconds), in place of
        those of the faults before."""
        if self._fault_clock is not None:
            self._fault_clock.cancel()
        self._fault_clock = asyncio.create_task(self._run_fault_clock(self.faults, since))

    async def _run_fault_clock(self, faults: Faults, since: float) -> None:
        for at, action in timetable(faults):
            await asyncio.sleep(max(0.0, since + at - time.monotonic()))
            await self._apply(action, faults)

    async def _apply(self, action: FaultAction, faults: Faults) -> None:
        if action is FaultAction.DROP:
            self.abort()
        elif action is FaultAction.STALL:
            self._injector.stalled = True
        else:
            assert faults.close_code is not None  # a close fault has a code
            await self.close(faults.close_code, "simulated fault")

    def _restart_pinger(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        self._pinger = asyncio.create_task(self._ping_loop())

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ping_delay)
            if not self._injector.stalled:
                self.send(self.session.ping(self._host.clock()))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so that asyncio does not log it: the socket is gone anyway

    # --- requests ------------------------------------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        if self._injector.stalled:
            return
        try:
            request = decode_request(message, stream=self.stream)
        except DecodeError as exc:
            self.requests.append(exc)
            await self.close(4003, f"invalid request: {exc.reason}"[:120])
            return
        self.requests.append(request)
        code = close_on_request(self.faults)
        if code is not None:
            await self.close(code, "simulated fault")
            return
        outputs = self.session.receive(request, now=time.monotonic(), clock=self._host.clock())
        await self._carry_out(outputs)

    async def _carry_out(self, outputs: list[Output]) -> None:
        for item in outputs:
            if isinstance(item, Close):
                await self.close(item.code, item.reason)
            elif isinstance(item, SetPingDelay):
                self.ping_delay = item.seconds
                self._restart_pinger()
            elif isinstance(item, StartBurst):
                self._start_burst()
            else:
                self.send(item)

    def _start_burst(self) -> None:
        """Burst pre-built frames of every subscribed book and trade: a new burst, or the one that
        runs with the subscriptions made since it began."""
        books, trades = burst_targets(self.session.subscriptions)
        frames = self._host.burst_frames(books=books, trades=trades, dialect=self.dialect)
        if self._burst is not None and self._burst.running:
            self._burst.retarget(frames)
            return
        self._burst = Burst(
            self.ws,
            frames,
            limit=self.faults.burst_frames,
            rate=self.faults.burst_rate,
            dialect=self.dialect,
            emit_defaults=self._host.emit_defaults,
        )
        self._tasks.append(asyncio.create_task(self._burst.run()))
