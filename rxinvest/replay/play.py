"""Replay: a recording played back to a client through its own transports, under virtual time.

``rxinvest.connect(replay=path)`` gives a :class:`~rxinvest.streams.Client` whose transports are a
:class:`Player`'s: the same sources, codec, sessions, markers and operators as live, fed the recorded
frames. ``client.replay`` is the player; ``client.scheduler`` its :class:`ReplayScheduler`.

Rules of this module:

* **Which connection plays what.** The *n*-th connection the replaying client opens for a stream
  plays the *n*-th connection recorded for that stream (in the order they connected). Subscribe to
  what was recorded (``rxinvest replay FILE`` lists it) before :meth:`Player.run`; frames of recorded
  connections that no replaying connection plays are skipped and counted.
* **Time.** A received frame is handed over at its receive time (the ``r`` its transport stamped
  live), a mark at the recorder's time; the clock first advances to that time (it never goes back),
  so every timer due before the frame fires before it, as it did live. After the last record the
  clock advances to the recording's end. Frames stamped with one instant are all handed over, in
  file order, however many there are.
* **Requests.** What the replaying client sends is compared, frame by frame, with what the
  recorded client sent at that point: a difference means the answers that follow may not fit its
  subscriptions. Each one is counted in :attr:`ReplayStats.mismatches` and logged (the first few).
  A replaying connection of a stream the recording has no connection for is never opened, and
  counts as one mismatch (with a warning): its subscribers get nothing, and are told so in the
  stats, not by silence.
* **Lifecycle.** A recorded ``connected`` mark opens the connection (the client sends its
  subscriptions again, and marks a gap after a reconnect, as live); ``reconnect`` and
  ``disconnected`` lose it, with the recorded error; ``closed`` with an error other than the
  client's own close fails the connection's subscribers, as live. Gap recovery over REST is not
  recorded, so a replayed gap is marked but not filled.
* **Speed.** ``speed=None``: as fast as possible. ``speed=x``: the recorded pace times ``x``; each
  record waits for its due wall time, measured from the start of :meth:`Player.run` (no drift
  accumulates; :attr:`ReplayStats.late_ms` is how far behind the wall clock the replay fell at most).
* Threads: :meth:`Player.run` runs everything on the calling thread (reading, decoding, delivery,
  operators, timers); nothing else does.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from datetime import datetime
from typing import Any

import attrs

from rxinvest import errors
from rxinvest.errors import ClientClosedError, ConfigurationError, ConnectionLostError, RxInvestError
from rxinvest.replay.clock import ReplayScheduler
from rxinvest.replay.format import Frame, Header, Mark, MarkName, Truncated, time_of
from rxinvest.replay.read import read
from rxinvest.transport import Listener, Transport
from rxinvest.wire import Stream

__all__ = ["Player", "ReplayStats"]

log = logging.getLogger("rxinvest.replay")

_LOGGED_MISMATCHES = 5


@attrs.frozen(kw_only=True)
class ReplayStats:
    """What :meth:`Player.run` did.

    ``frames``: received frames handed to the client; ``skipped``: received frames of recorded
    connections no replaying connection plays; ``sent``: frames the replaying client sent;
    ``mismatches``: of those, how many differed from the recorded client's, plus the connections
    nothing recorded could play (see the module's rules);
    ``lost``: lines the recorder itself dropped (its ``loss`` marks); ``truncated``: the file stops
    short (a recorder killed); ``start``/``end``: the virtual span; ``seconds``: wall time taken;
    ``late_ms``: with a ``speed``, how far behind its wall schedule the replay fell at most.
    """

    frames: int
    skipped: int
    sent: int
    mismatches: int
    lost: int
    truncated: bool
    start: datetime
    end: datetime
    seconds: float
    late_ms: float


class _Connection:
    """One recorded connection's player: a :class:`~rxinvest.transport.Transport` of the client."""

    def __init__(self, player: Player, listener: Listener, stream: str) -> None:
        self._player = player
        self.listener = listener
        self.stream = stream
        self.recorded: int | None = None  # the recorded connection it plays
        self._running = False
        self._open = False
        self.sent: deque[str] = deque()  # sent by the replaying client, not yet compared

    # --- Transport ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def is_open(self) -> bool:
        return self._open

    def start(self) -> None:
        self._running = True
        self._player._started(self)

    def send(self, frames: list[str]) -> None:
        if self._open:
            self.sent.extend(frames)
            self._player.sent += len(frames)

    def close(self, timeout: float = 5.0) -> None:
        if self._running:
            self._running = self._open = False
            self.listener.closed(ClientClosedError("closed by the client"))

    # --- driven by the player ------------------------------------------------------------------------

    def opened(self, now: datetime) -> None:
        if self._running:
            self._open = True
            self.listener.opened(now)

    def lost(self, error: RxInvestError, retrying: bool) -> None:
        if self._open:
            self._open = False
            self._player._unanswered(self)
            self.listener.lost(error, retrying)

    def failed(self, error: RxInvestError) -> None:
        if self._running:
            self._running = self._open = False
            self._player._unanswered(self)
            self.listener.closed(error)


class Player:
    """Plays a recording to the connections of one client; a transport factory (see the module).

    Usually made for you by ``rxinvest.connect(replay=path, speed=...)``. Raises
    :class:`~rxinvest.errors.RecordingError` if the file cannot be read, and
    :class:`~rxinvest.errors.CorruptRecordingError` if it is not a recording.
    """

    def __init__(self, path: str | os.PathLike[str], *, speed: float | None = None) -> None:
        if speed is not None and (type(speed) not in (int, float) or not 0 < speed < float("inf")):
            raise ConfigurationError(f"speed must be None (as fast as possible) or > 0, not {speed!r}")
        self.path = os.fspath(path)
        self.speed = speed
        records = read(self.path)
        header = next(records)
        records.close()
        assert isinstance(header, Header)  # read() raises on a file without one
        self.header = header
        self.dialect = header.dialect
        self.scheduler = ReplayScheduler(time_of(header.time_ns))
        self._waiting: dict[str, deque[_Connection]] = {}  # started, not yet given a recorded one
        self._playing: dict[int, _Connection] = {}  # recorded connection -> its player
        self._refused: set[int] = set()  # recorded connections nobody plays
        self._ran = False
        self.sent = 0
        self._mismatches = 0

    def __repr__(self) -> str:
        return f"<rxinvest.replay.Player {self.path!r} speed={self.speed}>"

    def __call__(self, listener: Listener, *, stream: Stream, url: str) -> Transport:
        """The transport factory: ``Client(transport_factory=player)``."""
        return _Connection(self, listener, stream.value)

    def _started(self, connection: _Connection) -> None:
        if connection.recorded is None:
            self._waiting.setdefault(connection.stream, deque()).append(connection)

    def _player_of(self, number: int, stream: str) -> _Connection | None:
        connection = self._playing.get(number)
        if connection is not None or number in self._refused:
            return connection
        waiting = self._waiting.get(stream)
        if not waiting:
            self._refused.add(number)
            return None
        connection = waiting.popleft()
        connection.recorded = number
        self._playing[number] = connection
        return connection

    def drain(self) -> None:
        """Deliver what is due now (the client's hook after it closed: the completions)."""
        if not self.scheduler.advancing:
            self.scheduler.run_due()

    def run(self, *, until: datetime | None = None) -> ReplayStats:
        """Play the whole recording (or up to the virtual time ``until``) on this thread; returns
        what was done. Subscribe first. Call once per client."""
        if self._ran:
            raise ConfigurationError("a player runs once: connect(replay=...) again to replay again")
        if until is not None and (not isinstance(until, datetime) or until.tzinfo is None):
            raise ConfigurationError(f"until must be an aware datetime, not {until!r}")
        self._ran = True
        scheduler = self.scheduler
        advance = scheduler.advance_to
        start = scheduler.now
        began = time.monotonic()
        speed = self.speed
        frames = skipped = lost = 0
        truncated = False
        late = 0.0
        end = start
        for record in read(self.path):
            if type(record) is Frame:
                at = record.received_ns if record.received_ns is not None else record.time_ns
            elif type(record) is Mark:
                at = record.time_ns
            elif type(record) is Truncated:
                truncated = True
                log.warning("%s: %s", self.path, record.reason)
                break
            else:
                continue  # the header
            moment = time_of(at)
            if until is not None and moment > until:
                end = until
                break
            if speed is not None:
                late = max(late, self._wait(began, start, moment, speed))
            if moment > end:
                end = moment
            advance(moment)
            if type(record) is Frame:
                connection = self._player_of(record.connection, record.stream)
                if connection is None:
                    skipped += not record.sent
                elif record.sent:
                    self._compare(connection, record)
                elif connection.is_open:
                    frames += 1
                    connection.listener.frame(record.data, moment)
                    connection.listener.flush()
                else:
                    skipped += 1
            else:
                lost += self._mark(record, moment)  # type: ignore[arg-type]
            if speed is not None:
                # Delivered now, at its wall time: left for the next record's advance, it would
                # reach subscribers after the sleep before that record, one record late.
                advance(moment)
        advance(end)
        for connection in self._playing.values():  # requests the recording never answered
            self._unanswered(connection)
        for waiting in self._waiting.values():
            for connection in waiting:  # the recording has none for it: it never even opened
                log.warning("%s: no %s connection recorded to play this one's", self.path, connection.stream)
                self._mismatches += 1
        return ReplayStats(
            frames=frames,
            skipped=skipped,
            sent=self.sent,
            mismatches=self._mismatches,
            lost=lost,
            truncated=truncated,
            start=start,
            end=end,
            seconds=time.monotonic() - began,
            late_ms=late * 1000,
        )

    @staticmethod
    def _wait(began: float, start: datetime, moment: datetime, speed: float) -> float:
        """Sleep until ``moment``'s wall time; how late it is, in seconds."""
        due = began + (moment - start).total_seconds() / speed
        left = due - time.monotonic()
        if left > 0:
            time.sleep(left)
            return max(0.0, time.monotonic() - due)
        return -left

    def _unanswered(self, connection: _Connection) -> None:
        """What the replaying client sent that the recorded one did not (on this connection, before
        it was lost or the recording ended): each a mismatch."""
        while connection.sent:
            self._mismatch(connection.sent.popleft(), None, connection)

    def _compare(self, connection: _Connection, record: Frame) -> None:
        recorded = record.data.decode("utf-8", "surrogateescape")
        sent = connection.sent.popleft() if connection.sent else None
        if sent != recorded:
            self._mismatch(sent, recorded, connection)

    def _mismatch(self, sent: str | None, recorded: str | None, connection: _Connection) -> None:
        self._mismatches += 1
        if self._mismatches <= _LOGGED_MISMATCHES:
            log.warning(
                "%s: the replaying client sent %s where the recorded one sent %s on %s connection %s: "
                "subscribe to what was recorded",
                self.path,
                "nothing" if sent is None else repr(sent[:200]),
                "nothing" if recorded is None else repr(recorded[:200]),
                connection.stream,
                connection.recorded,
            )

    def _mark(self, mark: Mark, moment: datetime) -> int:
        """Carry out a lifecycle mark; returns the lines the recorder lost (a loss mark)."""
        name = mark.name
        if name == MarkName.LOSS:
            dropped = int(mark.detail.get("dropped") or 0)
            log.warning("%s: the recorder dropped %d lines here (its queue overflowed)", self.path, dropped)
            return dropped
        if name not in (MarkName.CONNECTED, MarkName.RECONNECT, MarkName.DISCONNECTED, MarkName.CLOSED):
            return 0  # gaps (the client makes its own), the end
        connection = self._player_of(mark.connection, mark.stream)
        if connection is None:
            return 0
        if name == MarkName.CONNECTED:
            received = mark.detail.get("r")
            connection.opened(time_of(received) if type(received) is int else moment)
            return 0
        error = _error(mark.detail)
        if name == MarkName.CLOSED:
            if not isinstance(error, ClientClosedError):
                connection.failed(error)
        else:
            connection.lost(error, name == MarkName.RECONNECT)
        return 0


def _error(detail: Any) -> RxInvestError:
    """The recorded error, as its class when it can be made from its message alone."""
    name, message = str(detail.get("error") or ""), str(detail.get("message") or "")
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, RxInvestError):
        try:
            return cls(message)
        except TypeError:  # it takes more than a message
            pass
    return ConnectionLostError(f"{name}: {message}" if name else message)
