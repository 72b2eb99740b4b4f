"""Recording: every frame of the tapped streams, both ways, with lifecycle and gap marks, to a
compressed JSON-lines file written by a background thread.

Rules:

* The reader threads never wait for the disk. A received frame is stamped and appended to a queue
  of at most ``queue_limit`` items without a lock (the hot path); marks, sent frames and the
  overflow take one short lock. The writer thread alone encodes, compresses and writes, and counts
  :attr:`Recorder.frames`. When the queue is full the item is dropped and counted, and the next item
  that fits is preceded by a ``loss`` mark saying how many were dropped and between which times: a
  loss is never silent.
* Lines may be queued out of their stamps' order (two reader threads a few µs apart, or the
  system clock stepping back): the writer gives each line the later of its stamp and the previous
  line's time, so that ``t`` never decreases.
* The writer flushes (a sync of the compressed stream, then the OS write) at least every ``flush_interval``
  seconds (default 0.5), so a recorder killed at any moment leaves a file readable up to its last
  flush. :meth:`Recorder.close` writes what is queued, then (unless ``digest=False``) reads the file
  back and writes the digest of its typed events (:mod:`rxinvest.replay.digest`: about 15 µs a
  received frame, on the writer thread, once the streams are closed), an ``end`` mark, and finishes
  the compressed stream.
* Compression is zstd, or gzip for a file named ``*.gz`` (:mod:`rxinvest.replay.compression` says
  why): a stream synced at every flush and cut short decodes up to the cut.
* What is written is what went over the wire, never the headers of the handshake; the token is not
  in any frame, and the writer checks: every secret it was given is replaced by ``***`` in what it
  writes (and counted in :attr:`Recorder.redacted`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from rxinvest.errors import RecordingError, RxInvestError
from rxinvest.replay.compression import compression_of, compressor
from rxinvest.replay.digest import digests
from rxinvest.replay.format import (
    RECEIVED_VERBATIM,
    Detail,
    Header,
    MarkName,
    encode_frame,
    encode_line,
    encode_mark,
)
from rxinvest.replay.read import read
from rxinvest.transport import Listener, Transport, TransportFactory
from rxinvest.wire import Stream

__all__ = ["DEFAULT_FLUSH_INTERVAL", "Recorder", "record"]

#: Seconds between two flushes of the file at most.
DEFAULT_FLUSH_INTERVAL = 0.5
_TICK = 0.05  # seconds the writer sleeps when the queue is empty
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_IN, _OUT, _MARK, _LOSS = 0, 1, 2, 3


def _ns(moment: datetime) -> int:
    """An aware datetime in ns since the epoch, exactly (datetimes hold microseconds)."""
    return (moment - _EPOCH) // _MICROSECOND * 1000


def record(path: str | os.PathLike[str], **options: Any) -> Recorder:
    """Open ``path`` (overwritten) and start a :class:`Recorder` writing to it; ``options`` are the
    recorder's (``secrets``, the token, are never written). Raises
    :class:`~rxinvest.errors.RecordingError` if the file cannot be opened. Usually called for you:
    ``rxinvest.connect(record=path)``."""
    return Recorder(path, **options).start()


class Recorder:
    """Writes the frames of the connections it taps to a recording; a context manager.

    It is a :class:`~rxinvest.transport.Tap`: ``Client(tap=recorder)`` records every stream the
    client opens. Thread-safe; :meth:`close` is idempotent. If the file cannot be written (a full
    disk), the recording stops there, :attr:`error` says why, and the client goes on.

    ``compression`` is ``"zstd"`` or ``"gzip"``; None (the default) goes by the file's name: ``*.gz``
    is gzip, any other zstd. ``level`` is the compressor's (1: the fastest of either).
    ``flush_interval`` is in seconds, ``queue_limit`` in items (frames and marks) waiting for the
    writer; ``digest=False`` leaves out the digest of typed events written at close. Raises
    :class:`~rxinvest.errors.RecordingError` for a bad option.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        dialect: str = "json",
        secrets: Iterable[str] = (),
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        queue_limit: int = 100_000,
        compression: str | None = None,
        level: int = 1,
        version: str = "",
        digest: bool = True,
    ) -> None:
        if not 0 < flush_interval <= 1.0:
            raise RecordingError(f"flush_interval must be in (0, 1] seconds, not {flush_interval!r}")
        self.path = os.fspath(path)
        try:
            #: ``"zstd"`` or ``"gzip"``: given, or by the file's name (``*.gz`` is gzip).
            self.compression = compression_of(self.path, compression)
        except ValueError as exc:
            raise RecordingError(str(exc)) from None
        self._dialect = dialect
        self._secrets = [s.encode() for s in secrets if s]
        self._flush_interval = flush_interval
        self._limit = queue_limit
        self._level = level
        self._version = version
        self._digest = digest
        self._queue: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        self._written = 0  # the time of the last line the writer encoded (ns)
        self._lost = 0  # items dropped since the last loss mark
        self._lost_since = 0
        self._lost_until = 0
        self._connections = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: Any = None
        self._closed = False
        #: Frames handed to the file (both ways), lines dropped on overflow, secrets replaced, bytes
        #: written (compressed), lines written, so far (the writer's counts: up to a tick behind).
        self.frames = 0
        self.lost = 0
        self.redacted = 0
        self.bytes = 0
        self.lines = 0
        self.error: BaseException | None = None  # what stopped the writer, if anything did

    def __repr__(self) -> str:
        return f"<rxinvest.replay.Recorder {self.path!r} frames={self.frames} lost={self.lost}>"

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Recorder:
        """Open the file, write the header and start the writer thread."""
        if self._thread is not None:
            return self
        try:
            self._file = open(self.path, "wb")  # noqa: SIM115 (closed by the writer thread)
        except OSError as exc:
            raise RecordingError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        header = Header(time_ns=time.time_ns(), dialect=self._dialect, version=self._version)
        self._written = header.time_ns
        self._compressor = compressor(self.compression, self._level)
        try:
            self._write(encode_line(header), 1)
            self._sync()
        except OSError as exc:  # a full disk, say: nothing is recorded, and the file is closed
            with contextlib.suppress(OSError):  # closed even when its last flush fails
                self._file.close()
            raise RecordingError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._thread = threading.Thread(target=self._run, name="rxinvest-recorder", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, the digest, an ``end`` mark, and close the file; waits until that
        is done (or ``timeout`` seconds: the writer is a daemon thread, and a process that exits
        before it finished leaves a file without its digest and end, read as truncated)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # --- the Tap: wrapping a stream connection's transport --------------------------------------------

    def __call__(
        self, listener: Listener, *, stream: Stream, url: str, factory: TransportFactory
    ) -> Transport:
        with self._lock:
            self._connections += 1
            number = self._connections
        tapped = _Tapped(self, listener, number, stream.value)
        tapped.inner = factory(tapped, stream=stream, url=url)
        return tapped

    # --- producers (any thread): a received frame takes no lock, the rest one short lock ------------

    def _put(self, item: tuple[Any, ...], frames: int = 0) -> None:
        """Queue ``item`` (stamped) or count it lost; ``frames`` is how many frames it holds."""
        with self._lock:
            if self._closed:
                return
            now = time.time_ns()
            queue = self._queue
            if len(queue) >= self._limit:
                lines = frames or 1  # a mark is one line; frames are a line each
                if not self._lost:
                    self._lost_since = now
                self._lost += lines
                self._lost_until = now
                self.lost += lines
                return
            if self._lost:
                queue.append((now, _LOSS, self._lost, self._lost_since, self._lost_until))
                self._lost = 0
            queue.append((now, *item))

    def received(self, connection: int, stream: str, data: bytes, now: datetime) -> None:
        """A received frame: the reader thread's hot path, without a lock while nothing is lost
        (a loss, or a close, is settled under the lock by :meth:`_put`)."""
        queue = self._queue
        if not (self._lost or self._closed) and len(queue) < self._limit:
            queue.append((time.time_ns(), _IN, connection, stream, data, now))
        else:
            self._put((_IN, connection, stream, data, now), 1)

    def sent(self, connection: int, stream: str, frames: list[str]) -> None:
        self._put((_OUT, connection, stream, frames), len(frames))

    def mark(self, connection: int, stream: str, name: str, detail: Mapping[str, Detail]) -> None:
        self._put((_MARK, connection, stream, name, detail))

    # --- the writer thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        flushed = time.monotonic()
        try:
            while True:
                stopping = self._stop.wait(_TICK)
                # Lines go straight into one buffer: a list of pieces and its join would copy every
                # frame once more, under the GIL the reader threads need.
                batch, count = bytearray(), 0
                stamped_at, stamped_ns = None, 0  # the frames of one read share their receive time
                last = self._written
                while True:
                    try:
                        item = queue.popleft()
                    except IndexError:
                        break
                    if item[1] == _IN:  # the usual item, encoded here: a call and a copy less a frame
                        stamp, _, connection, stream, data, received = item
                        if stamp < last:
                            stamp = last
                        last = stamp
                        self.frames += 1
                        if received is not stamped_at:
                            stamped_at, stamped_ns = received, _ns(received)
                        if data.isascii() and b"\n" not in data and data:  # as encode_frame writes it
                            batch += RECEIVED_VERBATIM % (stamp, connection, stream.encode(), stamped_ns)
                            batch += data
                            batch += b"}\n"
                        else:
                            batch += encode_frame(stamp, connection, stream, False, data, stamped_ns)
                        count += 1
                    else:
                        last = max(item[0], last)
                        for line in self._lines(item, last):
                            batch += line
                            count += 1
                    if count >= 4096:
                        self._write(batch, count)
                        batch, count = bytearray(), 0
                        # Under a load the writer never catches up with, the queue never empties:
                        # the flush is due all the same.
                        if time.monotonic() - flushed >= self._flush_interval:
                            self._sync()
                            flushed = time.monotonic()
                self._written = last
                if count:
                    self._write(batch, count)
                if stopping:
                    break
                if time.monotonic() - flushed >= self._flush_interval - _TICK:
                    self._sync()
                    flushed = time.monotonic()
            with self._lock:  # closed: nothing more is queued
                tail = list(queue)
                queue.clear()
                lost, self._lost = self._lost, 0
                now = time.time_ns()
            lines: list[bytes] = []
            last = self._written
            for item in tail:
                last = max(item[0], last)
                lines += self._lines(item, last)
            now = max(now, last)
            if lost:
                lines.append(self._loss_line(now, lost, self._lost_since, self._lost_until))
            if self._digest:
                # Read back what is written (up to this sync), decoded by the codec of today:
                # what ``rxinvest replay --check`` compares with later. No reader thread runs now.
                self._write(b"".join(lines), len(lines))
                self._sync()
                lines = [encode_mark(now, 0, "", MarkName.DIGEST, digests(read(self.path)))]
            lines.append(encode_mark(now, 0, "", MarkName.END, {"frames": self.frames, "lost": self.lost}))
            self._write(b"".join(lines), len(lines))
            self._file.write(self._compressor.finish())
        except Exception as exc:  # a full disk: keep the reader threads going, say why it stopped
            self.error = exc
            with self._lock:
                self._closed = True  # nothing more is queued
            queue.clear()
        finally:
            try:
                self._file.close()
            except OSError as exc:
                self.error = self.error or exc

    def _lines(self, item: tuple[Any, ...], now: int) -> list[bytes]:
        """The lines of a queued item, at time ``now`` (ns); counts the frames."""
        kind = item[1]
        if kind == _IN:
            _, _, connection, stream, data, received = item
            self.frames += 1
            return [encode_frame(now, connection, stream, False, data, _ns(received))]
        if kind == _OUT:
            _, _, connection, stream, frames = item
            self.frames += len(frames)
            return [
                encode_frame(now, connection, stream, True, f.encode("utf-8", "surrogateescape"), None)
                for f in frames
            ]
        if kind == _MARK:
            _, _, connection, stream, name, detail = item
            return [encode_mark(now, connection, stream, name, detail)]
        _, _, dropped, since, until = item
        return [self._loss_line(now, dropped, since, until)]

    @staticmethod
    def _loss_line(now: int, dropped: int, since: int, until: int) -> bytes:
        return encode_mark(
            now, 0, "", MarkName.LOSS, {"dropped": dropped, "since_ns": since, "until_ns": until}
        )

    def _write(self, data: bytes | bytearray, lines: int) -> None:
        """Compress ``data`` (``lines`` whole lines), secrets replaced, and write what comes out."""
        for secret in self._secrets:
            if secret in data:
                self.redacted += data.count(secret)
                data = data.replace(secret, b"***")
        self.lines += lines
        chunk = self._compressor.compress(data)
        if chunk:
            self._file.write(chunk)
            self.bytes += len(chunk)

    def _sync(self) -> None:
        chunk = self._compressor.sync()
        self._file.write(chunk)
        self.bytes += len(chunk)
        self._file.flush()


class _Tapped:
    """Between a stream connection and its transport: the transport's listener, the connection's
    transport; it tells the recorder what passes, then passes it on."""

    inner: Transport

    def __init__(self, recorder: Recorder, listener: Listener, connection: int, stream: str) -> None:
        self._recorder = recorder
        self._listener = listener
        self._connection = connection
        self._stream = stream
        self._open = False  # between opened and lost/closed: what is sent now goes out
        # The hot path, bound once.
        self.flush = listener.flush
        self.deadline = listener.deadline
        self.wanted = listener.wanted

    def _mark(self, name: str, detail: Mapping[str, Detail]) -> None:
        self._recorder.mark(self._connection, self._stream, name, detail)

    # --- Listener (the transport's thread) ---------------------------------------------------------------

    def opened(self, now: datetime) -> None:
        self._open = True
        self._mark(MarkName.CONNECTED, {"r": _ns(now)})  # before the frames the listener sends now
        self._listener.opened(now)

    def frame(self, data: bytes, now: datetime) -> None:
        self._recorder.received(self._connection, self._stream, data, now)
        self._listener.frame(data, now)

    def lost(self, error: RxInvestError, retrying: bool) -> None:
        self._open = False
        name = MarkName.RECONNECT if retrying else MarkName.DISCONNECTED
        self._mark(name, {"error": type(error).__name__, "message": str(error)})
        self._listener.lost(error, retrying)

    def closed(self, error: RxInvestError) -> None:
        self._open = False
        self._mark(MarkName.CLOSED, {"error": type(error).__name__, "message": str(error)})
        self._listener.closed(error)

    # --- Transport (the connection's side) ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.inner.running

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    def start(self) -> None:
        self.inner.start()

    def send(self, frames: list[str]) -> None:
        if frames and self._open:  # frames a closed transport drops are not sent: not recorded
            self._recorder.sent(self._connection, self._stream, frames)
        self.inner.send(frames)

    def close(self, timeout: float = 5.0) -> None:
        self.inner.close(timeout)

    def note(self, marker: object) -> None:
        """An in-band marker the client made for this connection's subscribers (a Gap)."""
        if attrs.has(type(marker)):
            fields = attrs.asdict(marker, value_serializer=_plain)  # type: ignore[arg-type]
            self._mark(type(marker).__name__.lower(), fields)


def _plain(_: object, __: object, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value") and not isinstance(value, int | str | float | bool):
        return value.value  # an enum
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    return value
