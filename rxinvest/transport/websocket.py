"""A WebSocket connection with its own reader thread (websocket-client), reconnecting when it may.

The reader thread connects, tells its :class:`Listener` (which sends the first frames), then reads:
each frame goes to ``listener.frame`` as raw bytes, with the receive time. It never runs user code:
the listener only decodes, updates its session and queues events for delivery. When the connection
breaks, :func:`rxinvest.protocol.classify_close` decides: a final error ends the thread
(``listener.closed(error)``), anything else is retried after a :class:`~rxinvest.protocol.Backoff`
pause. A watchdog closes a connection that stays silent past the listener's deadline.

The thread never dies from an error of rxinvest's own code (the listener's included): a guard logs
it, reports it as :class:`~rxinvest.errors.InternalError` through ``listener.lost`` and reconnects.
If no connection ever opened within ``open_timeout`` seconds of trying, the thread ends with
:class:`~rxinvest.errors.ConnectionFailedError` carrying the last attempt's error; once one has
opened, losses are retried for as long as the listener wants the stream.

TLS certificates are verified (websocket-client's defaults) for ``wss://``. The token travels only in
the ``Authorization`` header and is never logged or put in an error.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import websocket  # websocket-client

from rxinvest.errors import (
    ClientClosedError,
    ConfigurationError,
    ConnectionFailedError,
    ConnectionLostError,
    InternalError,
    RxInvestError,
)
from rxinvest.protocol import Backoff, classify_close, classify_handshake
from rxinvest.transport.base import Listener

__all__ = ["WebSocketTransport"]

log = logging.getLogger("rxinvest.transport")

_POLL = 0.5  # seconds a blocked read waits before the watchdog looks at the deadline
_READ_AHEAD = 1 << 18  # bytes read from the socket at once
_FLUSH_EVERY = 256  # frames at most between two hand-overs to the delivery threads


class WebSocketTransport:
    """One logical stream connection: connect, read, reconnect, until closed or refused for good.

    A :class:`~rxinvest.transport.base.Transport`; its reader thread calls the listener.
    """

    def __init__(
        self,
        url: str,
        listener: Listener,
        *,
        token: str,
        dialect: str,
        app_name: str | None = None,
        open_timeout: float = 10.0,
        backoff: Backoff | None = None,
        name: str = "rxinvest-reader",
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ConfigurationError(f"not a WebSocket URL: {url!r}")
        self.url = url
        self._listener = listener
        self._headers = [f"Authorization: Bearer {token}"]
        if app_name:
            self._headers.append(f"x-app-name: {app_name}")
        self._dialect = dialect
        self._open_timeout = open_timeout
        self._backoff = backoff or Backoff()
        self._name = name
        self._ws: websocket.WebSocket | None = None
        self._send_lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.connections = 0  # how many times it connected (tests, stats)
        self._backoff_pending = False  # a new connection has not yet proved itself by delivering

    def __repr__(self) -> str:  # the token stays out
        return f"<WebSocketTransport {self.url} open={self.is_open}>"

    @property
    def is_open(self) -> bool:
        ws = self._ws
        return ws is not None and ws.connected

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the reader thread (it connects; this does not wait); a no-op while it runs."""
        if self.running or self._closing.is_set():
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def send(self, frames: list[str]) -> None:
        """Send frames if connected (from any thread); while down they are dropped: the listener
        redoes its state in ``opened``."""
        ws = self._ws
        if ws is None or not frames:
            return
        try:
            with self._send_lock:
                for frame in frames:
                    ws.send(frame)
        except (OSError, websocket.WebSocketException) as exc:
            log.debug("send failed (%s); the reader will reconnect", type(exc).__name__)

    def close(self, timeout: float = 5.0) -> None:
        """Close for good and wait for the reader thread; the listener hears ClientClosedError."""
        self._closing.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                ws.close(timeout=1)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # --- the reader thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        error: RxInvestError = ClientClosedError("closed by the client")
        started = time.monotonic()
        try:
            while not self._closing.is_set():
                try:
                    outcome = self._session()
                except Exception as exc:  # a bug of ours must not end the stream: report, reconnect
                    log.exception("%s: internal error; the connection is opened anew", self._name)
                    internal = InternalError(f"{type(exc).__name__}: {exc}")
                    internal.__cause__ = exc
                    outcome = internal, True
                if outcome is None:
                    break  # closed by us
                failure, retry = outcome
                if not retry:
                    error = failure
                    break
                if not self.connections and time.monotonic() - started >= self._open_timeout:
                    error = ConnectionFailedError(
                        f"no connection to {self.url} within {self._open_timeout:g} s", cause=failure
                    )
                    break
                if not self._listener.wanted():
                    self._listener.lost(failure, False)
                    error = failure
                    break
                self._listener.lost(failure, True)
                # A stream-count or request limit lifts only when the API recounts: no attempt before.
                pause = max(self._backoff.next(), getattr(failure, "retry_after", 0.0))
                if self._closing.wait(pause):
                    break
        finally:
            self._ws = None
            self._listener.closed(error)

    def _session(self) -> tuple[RxInvestError, bool] | None:
        """One connection from open to close: None if we closed it, else (error, retry?)."""
        try:
            ws = websocket.create_connection(
                self.url,
                header=self._headers,
                subprotocols=[self._dialect],
                skip_utf8_validation=True,  # ~40x faster reads; the JSON decoder checks UTF-8 in C
                timeout=self._open_timeout,
                enable_multithread=True,
            )
        except websocket.WebSocketBadStatusException as exc:
            return classify_handshake(exc.status_code, self.url)
        except (OSError, websocket.WebSocketException) as exc:
            return ConnectionLostError(f"cannot connect to {self.url}: {type(exc).__name__}: {exc}"), True
        self._ws = ws
        self.connections += 1
        if self._closing.is_set():
            ws.close()
            return None
        try:
            ws.settimeout(_POLL)
            ws.sock = _BufferedSocket(ws.sock)  # type: ignore[assignment]
            self._listener.opened(_now())
            return self._read(ws)
        finally:
            self._ws = None
            ws.shutdown()  # type: ignore[no-untyped-call]  # the socket, whatever state the WebSocket is in

    def _read(self, ws: websocket.WebSocket) -> tuple[RxInvestError, bool] | None:
        listener = self._listener
        opcode_text, opcode_binary, opcode_close = (
            websocket.ABNF.OPCODE_TEXT,
            websocket.ABNF.OPCODE_BINARY,
            websocket.ABNF.OPCODE_CLOSE,
        )
        sock: _BufferedSocket = ws.sock  # type: ignore[assignment]
        deliver, flush = listener.frame, listener.flush
        since_flush = 0
        self._backoff_pending = True
        while True:
            try:
                opcode, frame = ws.recv_data_frame(control_frame=True)
            except websocket.WebSocketTimeoutException:
                if since_flush:  # nothing more came: what was read is handed over
                    flush()
                    since_flush = 0
                deadline = listener.deadline()
                if deadline is not None and _now() > deadline:
                    ws.close(timeout=0.5)
                    return ConnectionLostError("the stream went silent (no data and no pings)"), True
                continue
            except (TimeoutError, OSError, websocket.WebSocketException) as exc:
                if self._closing.is_set():
                    return None
                return ConnectionLostError(f"the connection was lost: {type(exc).__name__}"), True
            if opcode in (opcode_text, opcode_binary):
                # Stamped with the time its bytes came off the socket (one clock read per read-ahead).
                deliver(frame.data, sock.received_at)
                since_flush += 1
            elif opcode == opcode_close:
                if self._closing.is_set():
                    return None
                code, reason = _close_details(frame.data)
                return classify_close(code, reason)
            # Hand over when the read-ahead is used up (the burst is over, as far as we know) or
            # every _FLUSH_EVERY frames, so that a stream that never pauses is still delivered; after
            # any frame, a ping read with data included (or the data would wait for the next one).
            if since_flush and (not sock.buffered or since_flush >= _FLUSH_EVERY):
                flush()
                since_flush = 0
                if self._backoff_pending:  # it works again: the next loss starts with a short pause
                    self._backoff.reset()
                    self._backoff_pending = False


class _BufferedSocket:
    """Reads the socket in large chunks and serves websocket-client's small reads from memory.

    websocket-client reads each frame's header, length and payload with separate ``recv`` calls: two
    or three system calls per frame. Reading ahead makes it about one per 64 KiB.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = b""
        self._offset = 0
        self.received_at = _now()  # when the current read-ahead arrived

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._offset

    def recv(self, size: int) -> bytes:
        if self._offset >= len(self._buffer):
            self._buffer, self._offset = self._sock.recv(_READ_AHEAD), 0
            self.received_at = _now()
            if not self._buffer:
                return b""
        chunk = self._buffer[self._offset : self._offset + size]
        self._offset += len(chunk)
        return chunk

    def __getattr__(self, name: str) -> Any:  # send, settimeout, fileno, shutdown ...: the socket's
        return getattr(self._sock, name)


def _close_details(data: bytes) -> tuple[int | None, str]:
    if len(data) < 2:
        return None, ""
    return int.from_bytes(data[:2], "big"), data[2:].decode("utf-8", "replace")


def _now() -> datetime:
    return datetime.now(UTC)
