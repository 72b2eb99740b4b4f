"""What the client tests share: a client whose streams are in-memory transports the test plays."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from reactivex.scheduler import ImmediateScheduler

from rxinvest import Limits, wire
from rxinvest.streams import Client
from rxinvest.transport import MemoryTransport


def memory_client(**options: Any) -> tuple[Client, dict[str, MemoryTransport]]:
    """A client whose every stream is a :class:`MemoryTransport`, found by stream name once opened.

    ``ping_delay=None`` unless given: the requests are then only what the tests read; and no
    linger unless given: each call's request leaves at once, as the tests read them.
    """
    transports: dict[str, MemoryTransport] = {}

    def factory(listener: Any, *, stream: wire.Stream, url: str) -> MemoryTransport:
        transports[stream.value] = MemoryTransport(listener, stream=stream, url=url)
        return transports[stream.value]

    options.setdefault("ping_delay", None)
    options.setdefault("limits", Limits(linger=0.0))
    return Client(base_url="ws://memory/ws/", token="t", transport_factory=factory, **options), transports


@pytest.fixture
def wired() -> Iterator[tuple[Client, dict[str, MemoryTransport]]]:
    """A memory client delivering on the memory reader thread itself, in order (ImmediateScheduler)."""
    client, transports = memory_client(scheduler=ImmediateScheduler())
    yield client, transports
    client.close()
