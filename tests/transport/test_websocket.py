"""The WebSocket transport against a hand-written server on 127.0.0.1: what a real proxy may send."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from datetime import datetime
from typing import Any

from rxinvest.transport import WebSocketTransport


class _Listener:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.flushed = threading.Event()
        self.flushed_frames = 0

    def opened(self, now: datetime) -> None:
        pass

    def frame(self, data: bytes, now: datetime) -> None:
        self.frames.append(data)

    def flush(self) -> None:
        self.flushed_frames = len(self.frames)
        self.flushed.set()

    def deadline(self) -> None:
        return None

    def wanted(self) -> bool:
        return True

    def lost(self, error: Exception, retrying: bool) -> None:
        pass

    def closed(self, error: Exception) -> None:
        pass


def _serve_once(payload: bytes, hold: threading.Event) -> int:
    """A server that accepts one WebSocket, sends ``payload`` in one write, and holds the
    connection open until ``hold`` is set; returns its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = next(
                line.split(b":", 1)[1].strip()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key")
            )
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: json\r\n\r\n"
            )
            time.sleep(0.2)
            conn.sendall(payload)
            hold.wait(10)

    threading.Thread(target=serve, daemon=True).start()
    port: int = server.getsockname()[1]
    return port


def test_a_frame_read_together_with_a_ping_is_handed_over_at_once() -> None:
    """A text frame and a WebSocket ping in one TCP write: the frame is read, then the ping, which
    empties the read-ahead. The hand-over must not wait for the next data frame (on a quiet account
    stream, the next API ping: 15 s or more)."""
    text = b'{"orderState":{}}'
    hold = threading.Event()
    port = _serve_once(bytes([0x81, len(text)]) + text + bytes([0x89, 0]), hold)
    listener: Any = _Listener()
    transport = WebSocketTransport(f"ws://127.0.0.1:{port}/", listener, token="t", dialect="json")
    transport.start()
    try:
        assert listener.flushed.wait(2.0), listener.frames
        assert listener.flushed_frames == 1 and listener.frames == [text]
    finally:
        hold.set()
        transport.close(timeout=2)
