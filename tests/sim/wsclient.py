"""A third-party client for simulator tests: the `websockets` library's sync client, not rxinvest's."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from rxinvest import wire
from rxinvest.sim import Simulator

TIMEOUT = 5.0  # seconds; every wait in these tests is bounded by it


@contextmanager
def open_stream(
    sim: Simulator, stream: str, *, token: str | None = "full", dialect: str = "json", header: bool = True
) -> Iterator[ClientConnection]:
    """Connect to ``stream``; the token goes in the Authorization header or, with header=False, as
    the second subprotocol value (as browsers do)."""
    secret = {"full": sim.token, "readonly": sim.readonly_token, None: None}.get(token, token)
    headers = {"Authorization": f"Bearer {secret}"} if secret and header else {}
    protocols = [dialect, secret] if secret and not header else [dialect]
    with connect(
        sim.url(stream), additional_headers=headers, subprotocols=protocols, open_timeout=TIMEOUT
    ) as ws:
        yield ws


def send(ws: ClientConnection, request: Any, dialect: str = "json") -> None:
    ws.send(wire.encode(request, dialect=dialect))


def frames(ws: ClientConnection, timeout: float = TIMEOUT) -> Iterator[str]:
    """Frames as they arrive during the next ``timeout`` seconds (fewer if the socket closes)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = ws.recv(timeout=left)
        except (TimeoutError, ConnectionClosed):
            return
        yield frame if isinstance(frame, str) else frame.decode()


def events(ws: ClientConnection, stream: str, timeout: float = TIMEOUT) -> Iterator[Any]:
    for frame in frames(ws, timeout):
        yield wire.decode(frame, stream=stream)


def first(
    ws: ClientConnection, stream: str, predicate: Callable[[Any], bool], *, timeout: float = TIMEOUT
) -> Any:
    """The first event matching ``predicate`` within ``timeout`` seconds; AssertionError otherwise."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = ws.recv(timeout=left)
        except TimeoutError:
            break
        event = wire.decode(frame, stream=stream)
        if predicate(event):
            return event
    raise AssertionError(f"no matching event on {stream} within {timeout} s")


def raw(frame: str | bytes) -> dict[str, Any]:
    return json.loads(frame)


def closed_with(ws: ClientConnection, timeout: float = TIMEOUT) -> tuple[int | None, str]:
    """Read until the server closes; returns its close code and reason (None: no close frame)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        received = closed.rcvd
        return (received.code, received.reason) if received else (None, "")
    except TimeoutError:
        pass
    raise AssertionError(f"the server did not close within {timeout} s")
