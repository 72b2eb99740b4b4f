"""The gateway: one process holds the T-Invest streams of a token and publishes them to NATS JetStream.

A :class:`Gateway` wraps an ordinary :class:`~rxinvest.streams.Client` (direct, to the API or the
simulator) and serves consumers (:func:`rxinvest.bus.connect`) over NATS. Rules:

* **Demand.** A consumer's stream connection forwards each request its client's session sends
  (the very frames it would send the API) to ``<prefix>.demand``; the gateway answers with the
  frames the API would answer, and the subjects to read. It counts demand per topic (a market-data
  :class:`~rxinvest.protocol.Topic`, or an account stream and its accounts) over every consumer
  connection and holds one subscription of its client per topic: the first demand subscribes, the
  last release disposes (the client's own registry then unsubscribes upstream, as for any source).
* **Grace.** What the last consumer released is held ``release_grace`` seconds more (2) before
  the client lets go upstream: a consumer that reconnects (it releases, then asks again) or a
  strategy that resubscribes costs no upstream request, and no events.
* **Leases.** A consumer renews its lease every few seconds (any message it sends does); one not
  heard of for ``lease`` seconds is released, so a consumer killed without a word pins nothing
  for longer. Every answer states ``lease``, and consumers renew by it.
* **Publishing.** Every market-data event frame the client receives is published once, as it
  came (the original frame, tapped on the reader thread before the client reads it), to its subject
  (:mod:`rxinvest.bus.subjects`); no header, no waiting for JetStream (a repeated book or price
  after a restart is what the API shows after a reconnect too). Account events are published from
  the client's sources, each as the frame that brought it (kept by the event's identity when the
  tap saw it; one its gap recovery filled in has none and is encoded in the client's dialect),
  one by one on a queue of their own, each acknowledged by JetStream (a
  failed publish is retried until it is stored; market data never waits for it). Each carries
  ``Rx-Time`` (when it was published) and a ``Nats-Msg-Id`` of its subject and identity: its
  content, but for an order state its order, status and executed lots, and for a fill report its
  order and trade ids, so that the copy the unary API gives after a gap has the id of the one the
  stream gave. A portfolio or positions snapshot has no time, and the same content may come again
  as news: each is published with an id of its own (recovery may repeat a state, never drop one).
  A restarted or new active gateway publishing an event again is de-duplicated within the
  stream's ``duplicate_window``.
* **Gaps.** A ``Gap`` marker of a held subscription (a reconnect upstream, an overflow) is published
  as a mark on each subject it concerns; consumers show it as a gap of their own. An account
  stream's gap that the client's recovery filled is no loss (the missing events follow as events)
  and is not marked; one whose recovery failed is.
* **High availability.** Gateways of one ``name`` contend for a lease in the key-value bucket
  ``<stream>_gateways``: the holder is active, renews it every ``takeover_after / 3`` seconds and
  serves demand; the others wait and take over when it has not been renewed for ``takeover_after``
  seconds (the bucket's TTL). An active gateway that cannot reach the bucket (a node of the cluster
  is gone) goes on serving, since nobody can take the lease meanwhile, and takes it again when the
  bucket answers; it stands by only when it sees another gateway holding it. An active gateway
  announces itself on ``<prefix>.active`` (``{"gateway": <id>, "state": "active"}``, at every
  renewal); consumers that see a new one send their demand again (and mark a gap). One that stops
  serving (closed, or standing by) says so (``"state": "stopped"``), so that its consumers show the
  loss at once instead of at their next lease. The new active gateway resumes each
  account stream from the time of the last event published on its subjects (the client's ``since``):
  what changed meanwhile is filled from the unary API, and what the old one had already published
  is dropped by JetStream's de-duplication. It resumes only from within ``resume_within`` and the
  stream's ``duplicate_window``, whichever is shorter: from further back its recovery would publish
  again what JetStream no longer recognises. A stream whose last event is older than that opens
  afresh, and its subjects get a gap mark from that event to now: what changed meanwhile is not
  filled, and its consumers see so.
* Threads: NATS runs on the gateway's own event-loop thread (``rxinvest-bus-gateway``); events
  come from the client's delivery threads and are handed to it without waiting for the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from rxinvest import model as m
from rxinvest.bus import answers
from rxinvest.bus._loop import LoopThread
from rxinvest.bus.subjects import MARK, SINCE, UNTIL, Subjects
from rxinvest.derived import Gap, GapCause, Marker, Recovered
from rxinvest.errors import BusError, ConfigurationError, DecodeError, RxInvestError
from rxinvest.model.kinds import EVENT_KINDS, REQUEST_KINDS
from rxinvest.protocol import Topic
from rxinvest.protocol.recovery import Lru
from rxinvest.streams import Client, Source
from rxinvest.streams.events import ConnectionStatus, SubscriptionStatus
from rxinvest.transport import Listener, Transport, TransportFactory
from rxinvest.wire import Stream, Unary, decode, decode_request, encode

__all__ = ["DEFAULT_LEASE", "Gateway", "Retention"]

log = logging.getLogger("rxinvest.bus")

#: Seconds a consumer's demand outlives its last message.
DEFAULT_LEASE = 10.0
_MARKET_BACKLOG = 100_000  # market messages waiting for NATS at most: past it the oldest go, marked
_TIME = "Rx-Time"  # when the gateway published it (resuming account streams reads it)
_ORIGINALS = 4096  # account frames kept at most while their events are on their way
_STATUS_TIMEOUT = 15.0  # seconds a demand waits for the API's answer before answering INTERNAL_ERROR


@attrs.frozen(kw_only=True)
class Retention:
    """How the JetStream stream keeps events: ``max_age`` seconds (default a day), ``max_bytes``
    (default 1 GiB; -1: unlimited), ``replicas`` (1, or 3 on a cluster), and the ``duplicate_window``
    in seconds within which a message id is remembered (default an hour, the gateway's default
    ``resume_within``: a gateway resumes account streams only from within it; never more than
    ``max_age``, which JetStream refuses)."""

    max_age: float = 86_400.0
    max_bytes: int = 1 << 30
    replicas: int = 1
    duplicate_window: float = 3_600.0

    @property
    def duplicates(self) -> float:
        """The duplicate window the stream gets: ``duplicate_window``, at most ``max_age`` (0:
        messages kept for ever)."""
        return min(self.duplicate_window, self.max_age) if self.max_age > 0 else self.duplicate_window


class _Held:
    """One subscription of the client that the gateway holds for its consumers."""

    __slots__ = ("disposable", "refs", "status", "subjects")

    def __init__(self) -> None:
        self.refs = 0
        self.disposable: Any = None
        self.status: asyncio.Future[SubscriptionStatus] | None = None
        self.subjects: tuple[str, ...] = ()


class Gateway:
    """Holds a client's streams and publishes them to NATS (see the module docstring).

    ``client`` is the direct client whose streams it holds (it is closed with the gateway when
    ``own_client``); ``servers`` one NATS URL or several (a cluster). ``name`` tells the gateways of
    one token apart from other tokens' (gateways of one name are one active and its standbys).
    Raises :class:`~rxinvest.errors.ConfigurationError` for a bad lease or takeover time, or a
    client that has a stream open already (its frames must all pass the gateway's tap), and
    :class:`~rxinvest.errors.BusError` from :meth:`start` when no NATS server answers.
    """

    def __init__(
        self,
        client: Client,
        servers: str | Sequence[str],
        *,
        name: str = "rxinvest",
        prefix: str = "tinvest",
        stream: str = "TINVEST",
        retention: Retention = Retention(),
        lease: float = DEFAULT_LEASE,
        takeover_after: float = 3.0,
        own_client: bool = True,
        resume_within: float = 3600.0,
        release_grace: float = 2.0,
    ) -> None:
        if not lease > 0 or not takeover_after > 0:
            raise ConfigurationError("lease and takeover_after must be positive seconds")
        self.client = client
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.name = name
        self.subjects = Subjects(prefix)
        self.stream = stream
        self.retention = retention
        self.lease = lease
        self.takeover_after = takeover_after
        self.own_client = own_client
        self.resume_within = min(resume_within, retention.duplicates)  # see the module's rules
        self.release_grace = release_grace
        self.id = uuid.uuid4().hex[:12]
        self.dialect = client.dialect
        #: Counts: messages published, marks among them, account publishes retried, market events
        #: not published (NATS away or too slow: each such run is marked as a gap on its subject).
        self.published = 0
        self.marks = 0
        self.retried = 0
        self.dropped = 0
        self._lost: dict[str, datetime] = {}  # subject -> since when its events were not published
        self._lost_lock = threading.Lock()
        self._disconnected_at: datetime | None = (
            None  # _lost and dropped: reader threads shed, the loop marks
        )
        self._runner = LoopThread("rxinvest-bus-gateway")
        self._loop = self._runner.loop
        self._nc: Any = None
        self._js: Any = None
        self._active = threading.Event()
        self._demand_sub: Any = None
        self._topics: dict[Topic, _Held] = {}
        self._account_status: dict[tuple[str, str], SubscriptionStatus] = {}
        # The client's latest confirmation of each topic: a topic it still holds (subscribed by
        # another, or released and wanted again before it let go) is not confirmed anew.
        self._confirmed: dict[Topic, SubscriptionStatus] = {}
        self._account_waiters: dict[tuple[str, str], list[asyncio.Future[SubscriptionStatus]]] = {}
        self._accounts: dict[tuple[Any, ...], _Held] = {}
        # consumer connection -> what it holds: topics, or account keys
        self._conns: dict[str, Counter[Any]] = {}
        self._seen: dict[str, float] = {}  # consumer connection -> monotonic time last heard of
        self._conn_locks: dict[str, asyncio.Lock] = {}  # a connection's requests, one at a time
        self._market_pending: deque[tuple[str, bytes, dict[str, str] | None]] = deque()
        self._account_pending: deque[tuple[str, bytes, dict[str, str] | None]] = deque()
        self._wakes: tuple[asyncio.Event, asyncio.Event] = (asyncio.Event(), asyncio.Event())
        self._tasks: list[asyncio.Task[Any]] = []
        self._statuses: Any = None
        self._closed = False
        # Account frames as they came, by their event's identity, until the event is published (a
        # bound: an event the client never delivers must not pin its frame).
        self._originals: Lru[tuple[type, bytes], bytes] = Lru(_ORIGINALS)
        self._originals_lock = threading.Lock()
        self._snapshots_published = itertools.count()  # see _account_item
        client.watch(_FrameTap(self._market_frame, self._account_frame))

    def __repr__(self) -> str:
        state = "active" if self._active.is_set() else "standby"
        return f"<rxinvest.bus.Gateway {self.name} {self.id} {state} topics={len(self._topics)}>"

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def active(self) -> bool:
        """Does this gateway hold the lease (serve demand and publish)?"""
        return self._active.is_set()

    def demand(self) -> dict[str, int]:
        """What consumers want now, and how many consumer connections want it: topics and account
        streams, by a readable name (what is in its release grace is not listed). A snapshot;
        thread-safe."""
        snapshot: dict[str, int] = self._call(self._demand_snapshot)
        return snapshot

    def wait_active(self, timeout: float = 10.0) -> bool:
        """Block until this gateway is active, up to ``timeout`` seconds; returns whether it is."""
        return self._active.wait(timeout)

    def start(self, timeout: float = 10.0) -> Gateway:
        """Connect to NATS, create the stream and the lease bucket if needed, and start contending
        for the lease. Returns at once when it is standby (see :attr:`active`)."""
        self._runner.start()
        try:
            self._runner.run(self._start(), timeout)
        except BaseException as exc:
            self.close()
            if isinstance(exc, RxInvestError):
                raise
            raise BusError(f"cannot start the gateway on {', '.join(self.servers)}: {exc!r}") from exc
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Release the lease, stop serving and close NATS (and the client when ``own_client``).
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._runner.stop(self._stop(), timeout)
        if self.own_client:
            self.client.close()

    # --- on the loop ---------------------------------------------------------------------------------

    def _call(self, function: Any) -> Any:
        async def run() -> Any:
            return function()

        return self._runner.run(run(), 10)

    async def _start(self) -> None:
        import nats
        from nats.js.api import KeyValueConfig, StorageType, StreamConfig

        self._nc = await nats.connect(
            servers=self.servers,
            name=f"rxinvest-gateway-{self.name}-{self.id}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            allow_reconnect=True,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
        )
        self._js = self._nc.jetstream(timeout=10)
        retention = self.retention
        config = StreamConfig(
            name=self.stream,
            subjects=list(self.subjects.data),
            max_age=retention.max_age,
            max_bytes=retention.max_bytes,
            num_replicas=retention.replicas,
            duplicate_window=retention.duplicates,
            storage=StorageType.FILE,
        )
        try:
            await self._js.add_stream(config)
        except Exception:  # exists, perhaps with other limits: take ours
            await self._js.update_stream(config)
        bucket = f"{self.stream}_gateways"
        try:
            self._kv = await self._js.key_value(bucket)
        except Exception:
            self._kv = await self._js.create_key_value(
                KeyValueConfig(bucket=bucket, ttl=self.takeover_after, replicas=retention.replicas, history=1)
            )
        self._statuses = self.client.statuses.subscribe(on_next=self._on_status)
        self._tasks = [
            asyncio.create_task(self._contend()),
            asyncio.create_task(self._publisher(0)),
            asyncio.create_task(self._publisher(1)),
            asyncio.create_task(self._expire()),
        ]

    async def _disconnected(self) -> None:
        self._disconnected_at = datetime.now(UTC)

    async def _reconnected(self) -> None:
        """What was on its way to NATS when the connection broke is gone: every market-data
        subject held gets a gap mark (account events are published until JetStream has them)."""
        since, until = self._disconnected_at or datetime.now(UTC), datetime.now(UTC)
        self._disconnected_at = None
        for held in list(self._topics.values()):
            for subject in held.subjects:
                self._mark(subject, Gap(cause=GapCause.RECONNECT, since=since, until=until), account=False)

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._active.is_set():
            with contextlib.suppress(Exception):
                await self._kv.delete(self.name)  # let a standby take over at once
        await self._step_down()
        await self._flush_pending(0)
        await self._flush_pending(1)
        if self._statuses is not None:
            self._statuses.dispose()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()

    # --- the lease -------------------------------------------------------------------------------------

    async def _contend(self) -> None:
        """Hold the lease, or wait for it (see the module's rules)."""
        from nats.js.errors import KeyWrongLastSequenceError

        period = self.takeover_after / 3
        revision: int | None = None  # of our lease entry, while we hold it
        unreachable = False  # said once per outage
        while True:
            try:
                if revision is not None:
                    revision = await self._kv.update(self.name, self.id.encode(), last=revision)
                    await self._announce()
                else:
                    revision = await self._take()
                    if revision is not None and not self._active.is_set():
                        await self._become_active()
            except asyncio.CancelledError:
                raise
            except KeyWrongLastSequenceError:  # another gateway holds it
                revision = None
                if self._active.is_set():
                    log.warning("gateway %s: another gateway holds the lease: standing by", self.id)
                    await self._safely(self._step_down())
            except Exception as exc:
                # The bucket cannot be reached (a node of the cluster is gone, NATS reconnects):
                # nobody can take the lease meanwhile, so an active gateway goes on serving, and
                # takes its lease again when the bucket answers (it has expired by then).
                if revision is not None or not unreachable:
                    log.warning("gateway %s cannot reach its lease (%r): trying on", self.id, exc)
                revision, unreachable = None, True
                await asyncio.sleep(period)
                continue
            unreachable = False
            await asyncio.sleep(period)

    async def _take(self) -> int | None:
        """Take the lease if nobody holds it (or we do: a renewal whose answer was lost); its
        revision, or None when another gateway holds it."""
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            return int(await self._kv.create(self.name, self.id.encode()))
        except KeyWrongLastSequenceError:
            entry = await self._kv.get(self.name)
            if entry.value == self.id.encode():
                return int(entry.revision)
            if self._active.is_set():
                raise
            return None

    async def _safely(self, work: Any) -> None:
        try:
            await work
        except Exception:  # the contention must go on whatever happens
            log.exception("gateway %s: stepping down failed", self.id)

    async def _become_active(self) -> None:
        log.warning("gateway %s is active", self.id)
        self._demand_sub = await self._nc.subscribe(self.subjects.demand, cb=self._on_demand)
        self._active.set()
        await self._announce()

    async def _publish_status(self, status: ConnectionStatus) -> None:
        body = {
            "gateway": self.id,
            "stream": status.stream,
            "shard": status.shard,
            "state": status.state.value,
            "error": None if status.error is None else str(status.error),
            "time": datetime.now(UTC).isoformat(),
        }
        with contextlib.suppress(Exception):  # monitoring only: NATS away loses nothing else
            await self._nc.publish(self.subjects.status, json.dumps(body).encode())

    async def _announce(self, state: str = "active") -> None:
        await self._nc.publish(
            self.subjects.active, json.dumps({"gateway": self.id, "state": state}).encode()
        )

    async def _step_down(self) -> None:
        if self._active.is_set():
            with contextlib.suppress(Exception):  # NATS may be what failed: consumers' leases tell them then
                await self._announce("stopped")
        self._active.clear()
        if self._demand_sub is not None:
            with contextlib.suppress(Exception):
                await self._demand_sub.unsubscribe()
            self._demand_sub = None
        for conn in list(self._conns):
            self._release_conn(conn)
        for topic, held in list(self._topics.items()):
            self._let_go(topic, held)
        for key, held_accounts in list(self._accounts.items()):
            self._let_go_accounts(key, held_accounts)

    # --- demand ----------------------------------------------------------------------------------------

    async def _on_demand(self, msg: Any) -> None:
        """Take one demand message: its lease counts at once; it is answered in a task of its own,
        after the connection's earlier requests (a request may wait for the API: nobody else's
        lease or request waits behind it)."""
        try:
            request = json.loads(msg.data)
            conn = str(request["conn"])
        except Exception as exc:  # a bad request harms only its sender
            await self._reply(msg, {"error": repr(exc)})
            return
        self._seen[conn] = time.monotonic()
        lock = self._conn_locks.setdefault(conn, asyncio.Lock())
        self._runner.spawn(self._serve(msg, request, conn, lock))

    async def _serve(self, msg: Any, request: dict[str, Any], conn: str, lock: asyncio.Lock) -> None:
        async with lock:
            await self._reply(msg, await self._answer(request, conn))

    async def _answer(self, request: dict[str, Any], conn: str) -> dict[str, Any]:
        try:
            op = request["op"]
            if op == "lease":
                reply: dict[str, Any] = {"known": conn in self._conns}
            elif op == "release":
                self._release_conn(conn)
                reply = {}
            elif op == "request":
                reply = await self._request(
                    conn, Stream.parse(request["stream"]), request["frame"], bool(request.get("resuming"))
                )
            else:
                raise BusError(f"unknown demand op {op!r}")
        except Exception as exc:  # a bad request harms only its sender
            log.warning("bad demand: %r", exc)
            reply = {"error": repr(exc)}
        return reply

    async def _reply(self, msg: Any, reply: dict[str, Any]) -> None:
        reply["gateway"] = self.id
        reply["dialect"] = self.dialect
        reply["lease"] = self.lease  # consumers renew by it, whatever they were told
        if msg.reply:
            with contextlib.suppress(Exception):  # the asker is gone, or NATS is: it asks again
                await self._nc.publish(msg.reply, json.dumps(reply).encode())

    async def _request(self, conn: str, stream: Stream, frame: str, resuming: bool) -> dict[str, Any]:
        """Answer one request of a consumer connection as the API would."""
        held = self._conns.setdefault(conn, Counter())
        request = decode_request(frame, stream=stream.value)
        if stream is not Stream.MARKET_DATA:
            return await self._account_request(conn, held, stream, request, resuming)
        kind = REQUEST_KINDS.get(type(request))
        if kind is None:  # ping, ping settings, getMySubscriptions
            statuses: dict[Topic, SubscriptionStatus | None] = {
                t: h.status.result()
                for t, h in self._topics.items()
                if h.status is not None and h.status.done()
            }
            frames = answers.other(request, [t for t in held if isinstance(t, Topic)], statuses)
            return {"frames": [encode(f, dialect=self.dialect) for f in frames]}
        topics = answers.topics_of(kind, request)
        subscribe = request.subscription_action is m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE
        if subscribe:
            for topic in topics:
                if held[topic] == 0:
                    held[topic] = 1
                    self._hold(topic)
        else:
            for topic in topics:
                if held.pop(topic, 0):
                    self._unhold(topic)
        statuses = await self._statuses_of(topics) if subscribe else {}
        # One subject per topic, in request order (None: not confirmed); a topic released while
        # this was answered has none.
        subjects = [
            self.subjects.of_topic(t, status.instrument_uid)
            if status is not None and status.confirmed
            else None
            for t in topics
            for status in (statuses.get(t),)
        ]
        response = answers.subscription_response(kind, request, topics, statuses, subscribe)
        return {"frames": [encode(response, dialect=self.dialect)], "subjects": subjects}

    async def _statuses_of(self, topics: Sequence[Topic]) -> dict[Topic, SubscriptionStatus | None]:
        """The client's answer for each topic, waiting for them together at most _STATUS_TIMEOUT."""
        waiting = {
            topic: held.status
            for topic in topics
            if (held := self._topics.get(topic)) is not None and held.status is not None
        }
        if waiting:
            await asyncio.wait([asyncio.shield(f) for f in waiting.values()], timeout=_STATUS_TIMEOUT)
        return {t: f.result() if (f := waiting.get(t)) is not None and f.done() else None for t in topics}

    def _hold(self, topic: Topic) -> None:
        held = self._topics.get(topic)
        if held is None:
            held = self._topics[topic] = _Held()
            held.status = self._loop.create_future()
            known = self._confirmed.get(topic)
            if known is not None:
                self._status(known)
            # Held for its demand and its gaps: its events are published from the frames, so a
            # conflated mailbox (the newest per instrument and kind) is all the work they cost.
            source = self.client.market_data.of_topics([topic], conflate=True).with_markers()
            try:
                held.disposable = source.subscribe(
                    on_next=functools.partial(self._market_item, topic),
                    on_error=functools.partial(self._on_failed, topic),
                )
            except BaseException:
                del self._topics[topic]
                raise
        held.refs += 1

    def _unhold(self, topic: Topic) -> None:
        held = self._topics.get(topic)
        if held is not None:
            held.refs -= 1
            if held.refs <= 0:
                self._loop.call_later(self.release_grace, self._let_go, topic, held)

    def _let_go(self, topic: Topic, held: _Held) -> None:
        """Dispose ``held`` if nobody took it again during the grace."""
        if self._topics.get(topic) is held and held.refs <= 0:
            del self._topics[topic]
            self._confirmed.pop(topic, None)  # the client lets it go: a new answer will come
            held.disposable.dispose()

    def _on_failed(self, topic: Topic, error: Exception) -> None:
        self._post(self._failed, topic, error)

    def _failed(self, topic: Topic, error: Exception) -> None:
        """A held source ended with an error (refused, or its connection failed for good): its
        waiting demand is answered with it; once confirmed, its subject gets a gap mark and the
        topic is forgotten, so that the next demand subscribes anew."""
        held = self._topics.pop(topic, None)
        self._confirmed.pop(topic, None)
        if held is None:
            return
        # No connection holds it any more, refused or failed: a count left behind would answer
        # that connection's next subscription without asking, and release another one's.
        for wanted in self._conns.values():
            wanted.pop(topic, None)
        if held.status is not None and not held.status.done():
            held.status.set_result(SubscriptionStatus(topic, False, error, ""))  # type: ignore[arg-type]
            return
        log.warning("the held subscription %s failed (%s): its consumers see a gap", topic, error)
        now = datetime.now(UTC)
        for subject in held.subjects:
            self._mark(subject, Gap(cause=GapCause.RECONNECT, since=now, until=now), account=False)

    def _on_status(self, status: object) -> None:
        self._post(self._status, status)

    def _status(self, status: object) -> None:
        """A subscription answer of the client, or the state of one of its connections (on the
        loop): the latter is published on ``<prefix>.status`` (its gaps come as marks)."""
        if isinstance(status, ConnectionStatus):
            if self._active.is_set():
                self._runner.spawn(self._publish_status(status))
            return
        if not isinstance(status, SubscriptionStatus):
            return
        target = status.target
        if isinstance(target, Topic):
            held = self._topics.get(target)
            if status.confirmed:
                self._confirmed[target] = status
            else:
                self._confirmed.pop(target, None)
            if held is None:
                return
            if status.confirmed:
                held.subjects = (self.subjects.of_topic(target, status.instrument_uid),)
            if held.status is not None and not held.status.done():
                held.status.set_result(status)
            return
        key = (status.stream, target)
        self._account_status[key] = status
        for waiter in self._account_waiters.pop(key, []):
            if not waiter.done():
                waiter.set_result(status)

    # --- account streams -------------------------------------------------------------------------------

    async def _account_request(
        self, conn: str, held: Counter[Any], stream: Stream, request: Any, resuming: bool
    ) -> dict[str, Any]:
        accounts = tuple(request.accounts)
        initial = bool(getattr(request, "with_initial_positions", False))
        key = (stream, accounts, initial)
        joined = key in self._accounts  # the stream is open: its first snapshots went out long ago
        if held[key] == 0:
            held[key] = 1
            await self._hold_accounts(key)
            if self._conns.get(conn) is not held:  # released while it opened: nobody else owns it
                self._unhold_accounts(key)
        answered = await asyncio.gather(*(self._account_status_of(stream, a) for a in accounts))
        statuses = dict(zip(accounts, answered, strict=True))
        answer = answers.account_answer(stream, accounts, statuses)
        granted = [a for a in accounts if (s := statuses[a]) is not None and s.confirmed]
        frames = [encode(answer, dialect=self.dialect)]
        if joined and not resuming and (stream is Stream.PORTFOLIO or initial):
            frames += [
                encode(snapshot, dialect=self.dialect) for snapshot in await self._snapshots(stream, granted)
            ]
        return {"frames": frames, "subjects": [self.subjects.account(stream, a) for a in granted]}

    async def _snapshots(self, stream: Stream, accounts: Sequence[str]) -> list[Any]:
        """What the API shows a new PositionsStream or PortfolioStream first, from the unary API
        (none when the client has no REST URL: the consumer then starts with the changes)."""
        method, request = (
            (Unary.GET_PORTFOLIO, m.PortfolioRequest)
            if stream is Stream.PORTFOLIO
            else (Unary.GET_POSITIONS, m.GetPositionsRequest)
        )
        out = []
        for account in accounts:
            try:
                answer = await self._loop.run_in_executor(
                    None, self.client.unary, method, request(account_id=account)
                )
            except RxInvestError as exc:
                log.warning("no %s snapshot of account %s for a new consumer: %s", stream, account, exc)
                continue
            out.append(attrs.evolve(answer, account_id=account))
        return out

    async def _account_status_of(self, stream: Stream, account: str) -> SubscriptionStatus | None:
        status = self._account_status.get((stream.value, account))
        if status is not None:
            return status
        waiter: asyncio.Future[SubscriptionStatus] = self._loop.create_future()
        waiters = self._account_waiters.setdefault((stream.value, account), [])
        waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter, _STATUS_TIMEOUT)
        except TimeoutError:
            if waiter in waiters:
                waiters.remove(waiter)
            return None

    async def _hold_accounts(self, key: tuple[Any, ...]) -> None:
        held = self._accounts.get(key)
        if held is None:
            stream, accounts, initial = key
            held = _Held()
            held.subjects = tuple(self.subjects.account(stream, a) for a in accounts)
            latest = await self._last_published(held.subjects)
            if key in self._accounts:  # another request opened it meanwhile
                self._accounts[key].refs += 1
                return
            now = datetime.now(UTC)
            # Resumed from the last event published (see the module's rules), or, too long ago for
            # that, opened afresh with a gap mark over what is not filled.
            recent = latest is not None and (now - latest).total_seconds() <= self.resume_within
            since = latest if recent else None
            if latest is not None and not recent:
                log.warning("%s %s: the last event is too old to resume from: a gap", stream, accounts)
                for subject in held.subjects:
                    self._mark(subject, Gap(cause=GapCause.RECONNECT, since=latest, until=now), account=True)
            for account in accounts:  # a fresh answer is awaited
                self._account_status.pop((stream.value, account), None)
            source: Source[Any]
            if stream is Stream.ORDER_STATE:
                source = self.client.orders.order_states(accounts, since=since)
            elif stream is Stream.TRADES:
                source = self.client.orders.order_trades(accounts, since=since)
            elif stream is Stream.POSITIONS:
                source = self.client.operations.positions(
                    accounts, with_initial_positions=initial, since=since
                )
            else:
                source = self.client.operations.portfolio(accounts, since=since)
            held.disposable = source.with_markers().subscribe(
                on_next=functools.partial(self._account_item, stream),
                on_error=functools.partial(self._on_account_failed, key),
            )
            self._accounts[key] = held
        held.refs += 1

    def _on_account_failed(self, key: tuple[Any, ...], error: Exception) -> None:
        self._post(self._account_failed, key, error)

    def _account_failed(self, key: tuple[Any, ...], error: Exception) -> None:
        """A held account stream ended with an error: its subjects get a gap mark and it is
        forgotten; consumers reopen and ask again, which opens it anew (resuming from its last
        event)."""
        held = self._accounts.pop(key, None)
        if held is None:
            return
        log.warning("account stream %s %s failed (%s): its consumers see a gap", key[0], key[1], error)
        now = datetime.now(UTC)
        for subject in held.subjects:
            self._mark(subject, Gap(cause=GapCause.RECONNECT, since=now, until=now), account=True)
        for wanted in self._conns.values():
            wanted.pop(key, None)

    async def _last_published(self, subjects: Sequence[str]) -> datetime | None:
        """The time of the latest event published on ``subjects`` (None: none)."""
        latest: datetime | None = None
        for subject in subjects:
            try:
                message = await self._js.get_last_msg(self.stream, subject)
            except Exception:  # nothing published there yet  # noqa: S112
                continue
            stamp = (message.headers or {}).get(_TIME)
            if stamp:
                try:
                    moment = datetime.fromisoformat(stamp)
                except ValueError:  # not ours: nothing to resume from
                    continue
                latest = moment if latest is None else max(latest, moment)
        return latest

    def _unhold_accounts(self, key: tuple[Any, ...]) -> None:
        held = self._accounts.get(key)
        if held is not None:
            held.refs -= 1
            if held.refs <= 0:
                self._loop.call_later(self.release_grace, self._let_go_accounts, key, held)

    def _let_go_accounts(self, key: tuple[Any, ...], held: _Held) -> None:
        if self._accounts.get(key) is held and held.refs <= 0:
            del self._accounts[key]
            held.disposable.dispose()

    def _account_item(self, stream: Stream, item: Any) -> None:
        """One item of an account source (on a delivery thread)."""
        if isinstance(item, Marker):
            # With gap recovery a Gap's missing events follow it, up to its Recovered: consumers
            # get them as events, and only a failed recovery leaves a loss to mark.
            if isinstance(item, Recovered) and item.error:
                item = Gap(cause=GapCause.RECONNECT, since=item.since, until=item.until, target=item.target)
            elif not isinstance(item, Gap) or self.client.gap_recovery:
                return
            subjects = [self.subjects.account(stream, item.target)] if item.target else []
            self._post(self._account_gap, stream, subjects, item)
            return
        subject = self.subjects.account(stream, item.account_id)
        identity = _identity(item)
        encoded = None
        if identity is None:  # its content is its identity
            identity = encoded = encode(item, dialect=self.dialect).encode()
        with self._originals_lock:
            payload = self._originals.pop((type(item), identity))
        if payload is None:  # learnt from the unary API (a gap's recovery): encoded as the stream would
            payload = encoded or encode(item, dialect=self.dialect).encode()
        if type(item) in _SNAPSHOTS:
            # A snapshot has no time: one equal to an earlier one (A, B, then A again) is news, and
            # must not be taken for a copy. Recovery's snapshot of an unchanged state goes out again:
            # a state repeated, nothing lost.
            identity += f"|{self.id}|{next(self._snapshots_published)}".encode()
        self._publish_account(subject, payload, identity)

    def _account_frame(self, stream: Stream, data: bytes) -> None:
        """A frame of an account stream (on its reader thread): an event's is kept, so that the
        event is published as it came, with fields this codec does not know (a newer API's)."""
        try:
            event = decode(data, stream=stream.value)
        except DecodeError:
            return  # the client skips and counts it
        if not isinstance(getattr(event, "account_id", None), str):
            return  # an answer or a ping
        key = (type(event), _identity(event) or encode(event, dialect=self.dialect).encode())
        with self._originals_lock:
            self._originals.put(key, bytes(data))

    def _account_gap(self, stream: Stream, subjects: list[str], gap: Gap) -> None:
        if not subjects:
            subjects = sorted(
                {s for key, h in self._accounts.items() if key[0] is stream for s in h.subjects}
            )
        for subject in subjects:
            self._mark(subject, gap, account=True)

    # --- market events (on delivery threads) ---------------------------------------------------------

    def _market_item(self, topic: Topic, item: Any) -> None:
        """An item of a held market-data source (on a delivery thread): its events went out as
        frames already (:meth:`_market_frame`); a gap is marked on the topic's subject."""
        if isinstance(item, Gap):
            self._post(self._market_gap, topic, item)

    def _market_frame(self, data: bytes) -> None:
        """A MarketDataStream frame of the client (on its reader thread): an event is published as
        it came, to its subject; anything else (answers, pings) stays here."""
        if not self._active.is_set():
            return
        try:
            event = decode(data, stream=Stream.MARKET_DATA.value)
        except DecodeError:
            return  # the client skips and counts it
        kind = EVENT_KINDS.get(type(event))
        if kind is not None:
            self._publish_market(self.subjects.of_event(kind, event), bytes(data))

    def _market_gap(self, topic: Topic, gap: Gap) -> None:
        held = self._topics.get(topic)
        if held is not None:
            for subject in held.subjects:
                self._mark(subject, gap, account=False)

    def _mark(self, subject: str, gap: Gap, *, account: bool) -> None:
        headers = {MARK: "gap", SINCE: gap.since.isoformat(), UNTIL: gap.until.isoformat()}
        self.marks += 1
        if account:
            self._publish_account(subject, b"", f"{headers[SINCE]}|{headers[UNTIL]}".encode(), headers)
        else:
            self._publish_market(subject, b"", headers)

    def _publish_market(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        """From any thread: hand one market-data message to its publisher (no id, no waiting for
        JetStream: a repeated book or price is what the API shows after a reconnect too)."""
        self._hand(self._market_pending, (subject, payload, headers), 0)

    def _publish_account(
        self, subject: str, payload: bytes, identity: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """From any thread: hand one account message to its publisher, with the id of its identity
        and the time it was published."""
        headers = dict(headers or {})
        headers["Nats-Msg-Id"] = hashlib.blake2b(
            subject.encode() + b"\0" + identity, digest_size=12
        ).hexdigest()
        headers[_TIME] = datetime.now(UTC).isoformat()
        self._hand(self._account_pending, (subject, payload, headers), 1)

    def _hand(self, pending: deque[tuple[str, bytes, dict[str, str] | None]], item: Any, which: int) -> None:
        if which == 0 and len(pending) >= _MARKET_BACKLOG:  # NATS cannot keep up: shed, and mark it
            subject = pending.popleft()[0]
            with self._lost_lock:
                self.dropped += 1
                self._lost.setdefault(subject, datetime.now(UTC))
        was_empty = not pending
        pending.append(item)
        if was_empty:
            self._post(self._wakes[which].set)

    def _post(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on the loop, from any thread; nothing once the gateway closed."""
        if not self._closed:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(function, *args)

    async def _publisher(self, which: int) -> None:
        """Publish what is handed over, in order: market data as it comes, account events each
        acknowledged by JetStream before the next (they never wait for each other)."""
        wake = self._wakes[which]
        while True:
            await wake.wait()
            wake.clear()
            await self._flush_pending(which)

    async def _flush_pending(self, which: int) -> None:
        if which == 1:  # account events: each until JetStream has it
            pending = self._account_pending
            while pending:
                subject, payload, headers = pending[0]
                await self._publish_acked(subject, payload, headers)
                pending.popleft()
                self.published += 1
            return
        pending = self._market_pending
        while pending:
            subject, payload, headers = pending.popleft()
            try:
                await self._nc.publish(subject, payload, headers=headers)
                self.published += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away, its buffer full: this event is lost, and marked
                with self._lost_lock:
                    self.dropped += 1
                    if subject not in self._lost:
                        log.warning(
                            "market data to %s not published (%r): a gap will be marked", subject, exc
                        )
                        self._lost[subject] = datetime.now(UTC)
        if self._lost and self._nc.is_connected:
            with self._lost_lock:
                lost, self._lost = self._lost, {}
            until = datetime.now(UTC)
            for subject, since in lost.items():
                self._mark(subject, Gap(cause=GapCause.OVERFLOW, since=since, until=until), account=False)

    async def _publish_acked(self, subject: str, payload: bytes, headers: dict[str, str] | None) -> None:
        """Publish until JetStream has stored it (an account event is never dropped)."""
        delay = 0.05
        while True:
            try:
                await self._js.publish(subject, payload, headers=headers, timeout=5)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.retried += 1
                log.warning("publishing to %s failed (%r): retrying", subject, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # --- leases ------------------------------------------------------------------------------------------

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.lease / 4))
            deadline = time.monotonic() - self.lease
            for conn, seen in list(self._seen.items()):
                if seen < deadline:
                    log.info("consumer connection %s: lease expired, its demand released", conn)
                    self._release_conn(conn)

    def _release_conn(self, conn: str) -> None:
        self._seen.pop(conn, None)
        self._conn_locks.pop(conn, None)
        held = self._conns.pop(conn, None)
        if not held:
            return
        for key in held:
            if isinstance(key, Topic):
                self._unhold(key)
            else:
                self._unhold_accounts(key)

    def _demand_snapshot(self) -> dict[str, int]:
        out = {str(topic): held.refs for topic, held in self._topics.items() if held.refs > 0}
        accounts = self._accounts.items()
        out.update({f"{key[0]} {','.join(key[1])}": held.refs for key, held in accounts if held.refs > 0})
        return out


#: Account events that carry no time of their own: their content may come again as a new event.
_SNAPSHOTS = (m.PortfolioResponse, m.PositionsResponse)


def _identity(event: Any) -> bytes | None:
    """What makes an account event the same event however it was learnt (the stream, or the unary
    API after a gap, whose copy differs in detail): an order's state by its status and executed
    lots, a fill report by its trades. None: its content (snapshots, position changes)."""
    if isinstance(event, m.OrderState):
        return f"{event.order_id}|{event.execution_report_status.name}|{event.lots_executed}".encode()
    if isinstance(event, m.OrderTrades):
        return f"{event.order_id}|{','.join(sorted(t.trade_id for t in event.trades))}".encode()
    return None


class _FrameTap:
    """A :class:`~rxinvest.transport.Tap` of the gateway's client: every frame it receives goes
    to ``on_market`` (MarketDataStream) or ``on_account`` (with its stream) too, on the reader
    thread, before the client reads it."""

    def __init__(
        self, on_market: Callable[[bytes], None], on_account: Callable[[Stream, bytes], None]
    ) -> None:
        self._on_market = on_market
        self._on_account = on_account

    def __call__(
        self, listener: Listener, *, stream: Stream, url: str, factory: TransportFactory
    ) -> Transport:
        if stream is Stream.MARKET_DATA:
            listener = _FrameListener(listener, self._on_market)
        else:
            listener = _FrameListener(listener, functools.partial(self._on_account, stream))
        return factory(listener, stream=stream, url=url)


class _FrameListener:
    """Passes every call on to the connection; shows each frame to ``on_frame`` first."""

    def __init__(self, inner: Listener, on_frame: Callable[[bytes], None]) -> None:
        self._inner = inner
        self._on_frame = on_frame
        self.opened = inner.opened
        self.flush = inner.flush
        self.deadline = inner.deadline
        self.wanted = inner.wanted
        self.lost = inner.lost
        self.closed = inner.closed

    def frame(self, data: bytes, now: datetime) -> None:
        try:
            self._on_frame(data)
        except Exception:  # publishing must never cost the client a frame
            log.exception("the gateway could not publish a frame")
        self._inner.frame(data, now)
