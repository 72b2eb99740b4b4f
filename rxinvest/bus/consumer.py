"""The consumer: ``rxinvest.bus.connect()`` gives a :class:`~rxinvest.streams.Client` fed by a gateway.

The client is the same class ``rxinvest.connect()`` returns, with the same sources, sessions, codec,
markers and operators; only its transports differ. Each stream connection of the client is a
:class:`_BusTransport`: what the client's session sends is forwarded to the gateway
(:mod:`rxinvest.bus.gateway`), which answers as the API would; the events come from NATS.

Rules:

* **Market data** is live: each subject a subscription answer names is subscribed on core NATS;
  for the kinds whose subscription shows the current state at once (books, last prices, trading
  statuses, candles), the subject's last stored message is handed over first unless a live one
  came meanwhile.
* **Market data from a time** (``since``): each subject is read from JetStream instead, by an
  ordered consumer that starts with what was stored on it from ``since`` and goes on live. What
  it brings before the subscription's answer is handed over waits for the answer (the session
  drops events of a topic not confirmed yet). The connection keeps, per subject, the stream
  sequence of the last message it handed over; a subscription sent again after a loss reads on
  from there, so a loss (marked, as always) skips nothing, and a gap mark in the history is a
  ``Gap`` in its place. A subscription the client ends forgets its place: sent again, it starts
  at ``since`` again.
* **Account streams** read JetStream through a pull consumer that filters their accounts' subjects,
  created before the demand is sent, so nothing published after it is missed. One per
  connection: the client's n-th connection with the same stream and accounts gets ``-n``, and an
  ephemeral consumer is deleted when its connection closes. With ``name`` it is durable
  (``<name>-<stream>-<accounts hash>``): a consumer restarted under the same name resumes after
  the last message it acknowledged. A batch of messages is acknowledged once every
  subscriber's ``on_next`` has returned for each of them, and the next batch is fetched only then:
  a consumer killed meanwhile gets them again under its name (at least once, never fewer), and a
  slow subscriber holds back the fetching, not memory. Closing, it acknowledges what its client
  delivered meanwhile and nothing else. Without ``name`` the consumer is ephemeral
  and starts with what is published from then on, or from ``since`` when given.
* **Gaps.** A gap mark on a subject, a new active gateway (``<prefix>.active``), a gateway that no
  longer knows this connection's demand, a request that goes unanswered, NATS dropping messages of
  a subscription that fell behind (a slow consumer), a reconnect of NATS (market data), renewals
  that no gateway answers for a whole lease, or the gateway saying it stopped serving all end
  the connection as a loss: the client opens it again, sends its subscriptions again (to the
  active gateway) and marks a ``Gap`` for its subscribers, exactly as after a reconnect of a
  WebSocket.
* **Leases.** Every ``lease / 3`` seconds each open connection renews its lease with the gateway.
  ``lease`` is the one the gateway states in each answer (it lets go of a connection not renewed
  within it), whatever ``connect`` was given: a consumer that renewed less often than its gateway
  expects would lose its demand, and mark a gap, every few seconds.
* Threads: one event-loop thread per client (``rxinvest-bus-consumer``) runs NATS and calls every
  listener; the client's delivery threads run user code, as with a direct client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from rxinvest import model as m
from rxinvest.bus import answers
from rxinvest.bus._loop import LoopThread
from rxinvest.bus.gateway import DEFAULT_LEASE
from rxinvest.bus.subjects import MARK, Subjects
from rxinvest.errors import (
    BusError,
    ClientClosedError,
    ConfigurationError,
    ConnectionLostError,
    RxInvestError,
)
from rxinvest.model.kinds import REQUEST_KINDS, Kind
from rxinvest.protocol import Topic
from rxinvest.protocol.pacing import Limits
from rxinvest.protocol.recovery import Lru
from rxinvest.streams import Client
from rxinvest.transport import Listener
from rxinvest.wire import Stream, decode_request

__all__ = ["DEFAULT_URL", "connect"]

log = logging.getLogger("rxinvest.bus")

#: Where ``connect()`` looks for NATS when given no URL.
DEFAULT_URL = "nats://127.0.0.1:4222"
_SNAPSHOT_KINDS = frozenset({Kind.ORDER_BOOKS, Kind.LAST_PRICES, Kind.INFO, Kind.CANDLES})
_REQUEST_TIMEOUT = 20.0  # seconds a request waits for the gateway (it may wait for the API itself)
_REOPEN_PAUSE = 0.2  # seconds between a loss and the next open
_BATCH = 256  # account messages fetched at once
_MAX_ACK_PENDING = 10_000  # account messages delivered and not yet acknowledged, at most
_CLOSE_WAIT = 2.5  # seconds a closing connection waits for its fetcher (a fetch waits 1 s at most)
_REBIND_AFTER = 3.0  # seconds of failing fetches before the pull consumer is made again
_CHECK_IDLE_EVERY = 5.0  # seconds of fetching nothing before asking the server what it owes
_NO_RESPONDERS_PAUSE = 0.1  # seconds between two requests while no gateway listens


def connect(
    servers: str | Sequence[str] | None = None,
    *,
    name: str | None = None,
    prefix: str = "tinvest",
    stream: str = "TINVEST",
    since: datetime | None = None,
    scheduler: Any = None,
    lease: float = DEFAULT_LEASE,
    open_timeout: float = 10.0,
    limits: Limits = Limits(),  # noqa: B008 (frozen)
) -> Client:
    """A :class:`~rxinvest.streams.Client` whose streams come from a gateway over NATS.

    * ``servers``: one NATS URL or several (a cluster); default :data:`DEFAULT_URL`.
    * ``name``: makes account streams durable under this name (see the module's rules): a consumer
      that restarts with it resumes after the last event it received. Without it they are
      ephemeral.
    * ``since``: an aware datetime: account streams of a consumer new to JetStream, and every
      market-data subscription, start with what was published from then (a replay that goes on
      live), not from now. Only what some consumer demanded then was published, and JetStream
      keeps it for the gateway's retention.
    * ``prefix``/``stream``: the gateway's subject prefix and JetStream stream.
    * ``scheduler``: where ``on_next`` runs, as for :func:`rxinvest.connect`.
    * ``lease``: the lease, in seconds, assumed until the gateway states its own (its first
      answer does); it is renewed every third of it.

    Raises :class:`~rxinvest.errors.BusError` when no NATS server or no gateway answers within
    ``open_timeout`` seconds, and :class:`~rxinvest.errors.ConfigurationError` for a bad argument.
    """
    if since is not None and (not isinstance(since, datetime) or since.utcoffset() is None):
        raise ConfigurationError(f"since must be an aware datetime or None, not {since!r}")
    if name is not None and (
        not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum()
    ):
        raise ConfigurationError(f"name must be letters, digits, - and _, not {name!r}")
    link = _Link(
        [servers or DEFAULT_URL] if isinstance(servers, str | None) else list(servers),
        name=name,
        subjects=Subjects(prefix),
        stream=stream,
        since=since,
        lease=lease,
    )
    dialect = link.start(open_timeout)
    try:
        return Client(
            base_url=f"nats://{link.servers[0].split('://')[-1]}/",
            token="bus",  # noqa: S106 (never sent: the gateway holds the token)
            dialect=dialect,
            scheduler=scheduler,
            transport_factory=link,
            on_close=[link.close],
            limits=attrs.evolve(limits, requests=None, linger=0),  # the gateway paces upstream
        )
    except BaseException:
        link.close()
        raise


class _Link:
    """One client's NATS connection and event loop; the transport factory of its client."""

    def __init__(
        self,
        servers: list[str],
        *,
        name: str | None,
        subjects: Subjects,
        stream: str,
        since: datetime | None,
        lease: float,
    ) -> None:
        self.servers = servers
        self.name = name
        self.subjects = subjects
        self.stream = stream
        self.since = since
        self.lease = lease
        self.id = uuid.uuid4().hex[:12]
        self.runner = LoopThread("rxinvest-bus-consumer")
        self.loop = self.runner.loop
        self.nc: Any = None
        self.js: Any = None
        self.gateway: str | None = None
        self.transports: set[_BusTransport] = set()
        self.consumers: set[str] = set()  # names of the pull consumers its connections hold
        self._numbers = itertools.count(1)
        self._closed = False

    def start(self, timeout: float) -> str:
        """Connect and meet the gateway; returns its dialect."""
        self.runner.start()
        try:
            return self.runner.run(self._start(timeout), timeout + 5)
        except BaseException as exc:
            self.close()
            if isinstance(exc, RxInvestError):
                raise
            raise BusError(f"cannot reach NATS at {', '.join(self.servers)}: {exc!r}") from exc

    async def _start(self, timeout: float) -> str:
        import nats

        self.nc = await nats.connect(
            servers=self.servers,
            name=f"rxinvest-consumer-{self.name or self.id}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=min(timeout, 5),
            error_cb=self._nats_error,
            reconnected_cb=self._reconnected,
        )
        self.js = self.nc.jetstream(timeout=10)
        await self.nc.subscribe(self.subjects.active, cb=self._announced)
        try:
            reply = await self.request({"op": "lease", "conn": f"{self.id}-hello"}, timeout)
        except BusError:
            raise BusError(f"no gateway answers on {self.subjects.demand} within {timeout:g} s") from None
        self.gateway = self.gateway or reply["gateway"]
        self.runner.spawn(self._renew())
        return str(reply["dialect"])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.runner.stop(self._stop())

    async def _stop(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    def __call__(self, listener: Listener, *, stream: Stream, url: str) -> _BusTransport:
        return _BusTransport(self, listener, stream)

    async def request(self, body: dict[str, Any], timeout: float = _REQUEST_TIMEOUT) -> dict[str, Any]:
        """One demand request; raises BusError when the gateway does not answer within ``timeout``
        seconds or says no. No responders (no active gateway yet, or a takeover under way) is
        retried until the deadline: NATS says so at once, which is no answer within the time."""
        import nats.errors

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        data = json.dumps(body).encode()
        while True:
            try:
                msg = await self.nc.request(
                    self.subjects.demand, data, timeout=max(deadline - loop.time(), 0.01)
                )
                break
            except nats.errors.NoRespondersError as exc:
                if loop.time() + _NO_RESPONDERS_PAUSE >= deadline:
                    raise BusError("the gateway did not answer (NoRespondersError)") from exc
                await asyncio.sleep(_NO_RESPONDERS_PAUSE)
            except Exception as exc:
                raise BusError(f"the gateway did not answer ({type(exc).__name__})") from exc
        try:
            reply: dict[str, Any] = json.loads(msg.data)
        except ValueError as exc:  # anyone may answer on the subject: no answer of a gateway
            raise BusError(f"the answer on {self.subjects.demand} is not JSON: {msg.data[:100]!r}") from exc
        if not isinstance(reply, dict):
            raise BusError(f"the answer on {self.subjects.demand} is not a JSON object: {msg.data[:100]!r}")
        if "error" in reply:
            raise BusError(f"the gateway refused the request: {reply['error']}")
        lease = reply.get("lease")
        if isinstance(lease, int | float) and not isinstance(lease, bool) and lease > 0:
            self.lease = float(lease)  # the gateway's: it lets go of a connection not renewed within it
        return reply

    def conn_id(self) -> str:
        return f"{self.id}-{next(self._numbers)}"

    async def _nats_error(self, error: Exception) -> None:
        """NATS dropped messages of a subscription that fell behind (a slow consumer): its
        connection shows that as a gap. Other errors are NATS's own business (it reconnects)."""
        import nats.errors

        if isinstance(error, nats.errors.SlowConsumerError):
            for transport in list(self.transports):
                if error.subject in transport.subjects():  # core and JetStream subscriptions alike
                    transport.lose(f"NATS dropped messages of {error.subject}: the subscriber fell behind")
        else:
            log.info("NATS: %r", error)

    async def _reconnected(self) -> None:
        """Market data sent while NATS was reconnecting is gone: every market-data connection
        shows that as a gap (account streams read on from JetStream, where nothing was lost)."""
        for transport in list(self.transports):
            if transport.stream is Stream.MARKET_DATA:
                transport.lose("NATS reconnected: market data of the meantime is gone")

    async def _announced(self, msg: Any) -> None:
        try:
            announcement = json.loads(msg.data)
            gateway, state = announcement["gateway"], announcement.get("state", "active")
        except (ValueError, TypeError, KeyError):
            log.warning("ignored a malformed announcement on %s: %r", msg.subject, msg.data[:200])
            return
        if state == "stopped":
            if gateway == self.gateway:  # ours stopped serving: whoever comes next is new
                log.warning("gateway %s stopped serving: the streams wait for the next one", gateway)
                self.gateway = None
                self._lose_all(f"the gateway {gateway} stopped serving")
        elif self.gateway is None:
            self.gateway = gateway  # the first we hear of (the answer to hello may be on its way)
        elif gateway != self.gateway:
            log.warning("gateway %s is active now (was %s): opening the streams anew", gateway, self.gateway)
            self.gateway = gateway
            self._lose_all("a new gateway took over")

    def _lose_all(self, why: str) -> None:
        for transport in list(self.transports):
            transport.lose(why)

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        renewed = loop.time()  # when a gateway last answered a renewal
        while True:
            await asyncio.sleep(self.lease / 3)
            held = [t for t in self.transports if t.conn is not None]
            if all(t.busy for t in held):  # no renewal to wait for: nothing can be found gone
                renewed = loop.time()
            for transport in held:
                if transport.conn is None:  # lost meanwhile
                    continue
                body = {"op": "lease", "conn": transport.conn}
                if transport.busy:
                    # The gateway answers a connection's messages in order, so this renewal's answer
                    # waits behind the request being answered, which may take longer than a lease.
                    # It renews on arrival all the same: sent, and not waited for.
                    self.runner.spawn(self._renew_busy(body))
                    continue
                try:
                    reply = await self.request(body, self.lease / 3)
                except Exception as exc:  # BusError: unanswered; anything else must not end renewing
                    # Unanswered for a whole lease, the demand is gone (the gateway releases it
                    # then too): no gateway serves (it died, no standby yet). Every connection is
                    # lost, as WebSockets whose server is gone, so the client's statuses say so and
                    # it keeps asking; the gap is marked when a gateway answers again. A slower
                    # answer than that is only late: asked again at the next renewal.
                    if loop.time() - renewed >= self.lease:
                        self.gateway = None
                        self._lose_all(f"no gateway renewed the lease for {self.lease:g} s: {exc}")
                        renewed = loop.time()
                    break
                renewed = loop.time()
                if not reply.get("known") and transport.conn is not None and not transport.busy:
                    transport.lose("the gateway does not know this connection's demand")

    async def _renew_busy(self, body: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # its answer says nothing the next renewal will not
            await self.request(body, self.lease)


class _BusTransport:
    """One stream connection of the client, carried by the bus (see the module's rules)."""

    def __init__(self, link: _Link, listener: Listener, stream: Stream) -> None:
        self.link = link
        self.listener = listener
        self.stream = stream
        self.conn: str | None = None
        self.busy = False  # a request is on its way
        self._running = False
        self._open = False
        self._closing = False
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._worker: asyncio.Task[Any] | None = None
        self._subs: dict[str, Any] = {}  # market subject -> NATS subscription
        self._subject_refs: Counter[str] = Counter()
        self._topic_subjects: dict[Topic, str] = {}
        self._live: set[str] = set()  # subjects a live message came on
        self._answering: set[str] = set()  # subjects whose answer is not handed over yet
        # With ``since``: the subjects read from JetStream, their messages that wait for an
        # answer, and per subject the stream sequence of the last one handed over (kept across
        # losses, forgotten when the client ends the subscription).
        self._stored: set[str] = set()
        self._held: list[Any] = []
        self._handed: dict[str, int] = {}
        self._fetcher: asyncio.Task[Any] | None = None
        self._resuming = False  # see _carry
        # The account stream's pull consumer: its name, filter, replicas, and the stream sequence
        # of the last message acknowledged (None: none yet).
        self._durable: str | None = None
        self._consumer_name = ""
        self._filter: list[str] = []
        self._replicas: int | None = None
        self._acked: int | None = None
        # The stream sequences of the last messages acknowledged (as many as may be pending): a
        # consumer made again from before some of them hands those over once only.
        self._recent: Lru[int, None] = Lru(_MAX_ACK_PENDING)
        self._flush_due = False

    def subjects(self) -> set[str]:
        """The market-data subjects it reads (a JetStream subscription's messages come on them)."""
        return set(self._subs)

    # --- Transport -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def is_open(self) -> bool:
        return self._open

    def start(self) -> None:
        self._running = True
        self.link.loop.call_soon_threadsafe(self._opening)

    def send(self, frames: list[str]) -> None:
        if frames:
            self.link.loop.call_soon_threadsafe(self._queue, list(frames))

    def close(self, timeout: float = 5.0) -> None:
        if not self._running or self._closing:
            return
        self._closing = True
        future = asyncio.run_coroutine_threadsafe(self._close(), self.link.loop)
        if not self.link.runner.here:
            with contextlib.suppress(Exception):
                future.result(timeout)

    # --- on the loop -----------------------------------------------------------------------------------

    def _queue(self, frames: list[str]) -> None:
        if self._open:
            for frame in frames:
                self._outbox.put_nowait(frame)

    def _opening(self) -> None:
        if self._closing:
            return
        self.conn = self.link.conn_id()
        self._outbox = asyncio.Queue()
        self._open = True
        self.link.transports.add(self)
        self._worker = asyncio.ensure_future(self._work())
        self.listener.opened(_now())  # the session sends its requests: they queue

    async def _work(self) -> None:
        """Carry the session's requests to the gateway, one at a time, in order."""
        while True:
            frame = await self._outbox.get()
            self.busy = True
            try:
                await self._carry(frame)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.busy = False
                self.lose(f"{type(exc).__name__}: {exc}")
                return
            finally:
                self.busy = False

    async def _carry(self, frame: str) -> None:
        request = decode_request(frame, stream=self.stream.value)
        kind = REQUEST_KINDS.get(type(request))
        if self.stream is not Stream.MARKET_DATA and self._fetcher is None:
            await self._consume_accounts(request)  # before the demand: nothing published after it is missed
        body: dict[str, Any] = {
            "op": "request",
            "conn": self.conn,
            "stream": self.stream.value,
            "frame": frame,
        }
        if self.stream is not Stream.MARKET_DATA:
            # A snapshot (initial positions, a portfolio) only for a consumer new to the stream: one
            # that resumes reads on from where it was, and a snapshot of now would overtake that.
            body["resuming"] = self._resuming
            self._resuming = True
        reply = await self.link.request(body)
        if kind is not None:
            topics = answers.topics_of(kind, request)
            subjects = reply.get("subjects") or [None] * len(topics)
            subscribe = request.subscription_action is m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE
            if subscribe:
                # Until the answer is handed over the session drops their events (not confirmed
                # yet): a message meanwhile must not count as the live one the snapshot yields to.
                self._answering.update(s for s in subjects if s)
                try:
                    followed = [await self._follow(t, s) for t, s in zip(topics, subjects, strict=False) if s]
                finally:
                    self._answering.difference_update(s for s in subjects if s)
                fresh = [subject for subject in followed if subject is not None]
            else:
                for topic in topics:
                    await self._unfollow(topic)
                fresh = []
        else:
            fresh = []
        now = _now()
        for answer in reply.get("frames", []):
            self.listener.frame(answer.encode(), now)
        self.listener.flush()
        held, self._held = self._held, []
        for message in held:  # stored messages of this request's subjects that came before its answer
            if self._open:
                self._hand_market(message)
        for subject in fresh:
            await self._snapshot(subject)

    async def _follow(self, topic: Topic, subject: str) -> str | None:
        """Subscribe ``subject`` for ``topic``; returns it if its last message should be shown."""
        if self._topic_subjects.get(topic) == subject:
            return None
        self._topic_subjects[topic] = subject
        self._subject_refs[subject] += 1
        if subject in self._subs:
            return None
        if self.link.since is not None:
            self._stored.add(subject)  # before subscribing: its first message may come at once
            self._subs[subject] = await self._read_stored(subject)
            return None
        self._subs[subject] = await self.link.nc.subscribe(subject, cb=self._market)
        return subject if topic.kind in _SNAPSHOT_KINDS else None

    async def _read_stored(self, subject: str) -> Any:
        """An ordered JetStream consumer of ``subject``: from ``since``, or after the last message
        this connection handed over (see the module's rules)."""
        from nats.js.api import ConsumerConfig, DeliverPolicy

        after = self._handed.get(subject)
        if after is None:
            assert self.link.since is not None
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=self.link.since.astimezone(UTC)
            )
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1)
        return await self.link.js.subscribe(
            subject, stream=self.link.stream, cb=self._market, ordered_consumer=True, config=config
        )

    async def _unfollow(self, topic: Topic) -> None:
        subject = self._topic_subjects.pop(topic, None)
        if subject is None:
            return
        self._subject_refs[subject] -= 1
        if self._subject_refs[subject] <= 0:
            del self._subject_refs[subject]
            sub = self._subs.pop(subject, None)
            self._live.discard(subject)
            self._stored.discard(subject)
            self._handed.pop(subject, None)
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _snapshot(self, subject: str) -> None:
        """Show the subject's last stored message, unless a live one came first."""
        try:
            message = await self.link.js.get_last_msg(self.link.stream, subject)
        except Exception:  # nothing stored yet: the live messages will show it
            return
        if subject in self._live or subject not in self._subs or (message.headers or {}).get(MARK):
            return
        self.listener.frame(bytes(message.data), _now())
        self._schedule_flush()

    async def _market(self, msg: Any) -> None:
        if not self._open:
            return
        if msg.subject in self._stored and msg.subject in self._answering:
            self._held.append(msg)  # history must not reach the session before the answer
            return
        self._hand_market(msg)

    def _hand_market(self, msg: Any) -> None:
        subject = msg.subject
        if subject in self._stored:  # handed over (a mark too): a later read starts after it
            sequence = msg.metadata.sequence.stream
            if sequence <= self._handed.get(subject, 0):
                return  # handed already: a late copy (a subscription of before a loss, or reset)
            self._handed[subject] = sequence
        if msg.headers and msg.headers.get(MARK):
            self.lose(f"gap at the gateway on {subject}")
            return
        if subject not in self._answering:
            self._live.add(subject)
        self.listener.frame(msg.data, _now())
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            self.link.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self._open:
            self.listener.flush()

    # --- account streams -------------------------------------------------------------------------------

    async def _consume_accounts(self, request: Any) -> None:
        link = self.link
        subjects = [link.subjects.account(self.stream, a) for a in request.accounts]
        digest = hashlib.blake2b(",".join(sorted(request.accounts)).encode(), digest_size=6).hexdigest()
        # One pull consumer per connection: two bound to one would split its messages between
        # them. The n-th connection of this client with the same stream and accounts (another
        # order of them, another option) gets ``-n``, the same after a restart that subscribes
        # in the same order.
        base = f"{link.name or link.id}-{self.stream.value}-{digest}"
        name, n = base, 1
        while name in link.consumers:
            n += 1
            name = f"{base}-{n}"
        link.consumers.add(name)
        self._durable = None if link.name is None else name
        self._consumer_name = name
        self._filter = subjects
        # Where a consumer made again would start: after what this one acknowledged (see _rebind);
        # None: where this one started, at ``since`` (after the stream's last message now would
        # skip the history it was made to read).
        try:
            info = await link.js.consumer_info(link.stream, self._consumer_name)
            self._resuming = info.delivered.consumer_seq > 0  # exists: read on where it left off
            acked = info.ack_floor.stream_seq
            self._acked = None if link.since is not None and not acked else acked
        except Exception:
            last = (await link.js.stream_info(link.stream)).state.last_seq
            self._acked = None if link.since is not None else last
            await link.js.add_consumer(link.stream, await self._config(None))
        sub = await link.js.pull_subscribe_bind(self._consumer_name, link.stream)
        self._fetcher = asyncio.ensure_future(self._fetch(sub))

    async def _config(self, after: int | None) -> Any:
        """The pull consumer's configuration: from now (or ``since``), or after stream sequence
        ``after``; as many replicas as the stream, so that it outlives a node of a cluster."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        link = self.link
        if self._replicas is None:
            self._replicas = (await link.js.stream_info(link.stream)).config.num_replicas or 1
        if after is not None:
            policy, start_time = DeliverPolicy.BY_START_SEQUENCE, None
        elif link.since is not None:
            policy, start_time = DeliverPolicy.BY_START_TIME, link.since.astimezone(UTC)
        else:
            policy, start_time = DeliverPolicy.NEW, None
        return ConsumerConfig(
            durable_name=self._durable,
            name=self._consumer_name,
            filter_subjects=self._filter,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=policy,
            opt_start_time=start_time,
            opt_start_seq=None if after is None else after + 1,
            inactive_threshold=None if self._durable else max(60.0, self.link.lease * 6),
            max_ack_pending=_MAX_ACK_PENDING,
            num_replicas=self._replicas,
        )

    async def _rebind(self, sub: Any) -> Any:
        """The pull consumer stopped answering (its node of a cluster is gone): make it again,
        after the last message acknowledged, and read on from there. Nothing is skipped."""
        link = self.link
        js = link.nc.jetstream(timeout=2.0)  # short: while the cluster elects, try again soon
        # After the server's acknowledgement floor when it can tell: messages delivered to a
        # fetch whose answer was lost are pending below later ones that were acknowledged, and
        # starting after those would skip them. What was handed over already is not again.
        after = self._acked
        with contextlib.suppress(Exception):
            info = await js.consumer_info(link.stream, self._consumer_name)
            if after is not None:
                after = min(after, info.ack_floor.stream_seq)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(link.stream, self._consumer_name)
        await js.add_consumer(link.stream, await self._config(after))
        log.warning("%s: consumer %s made again after sequence %s", self.stream, self._consumer_name, after)
        return await link.js.pull_subscribe_bind(self._consumer_name, link.stream)

    async def _fetch(self, sub: Any) -> None:
        import nats.errors

        failing_since: float | None = None
        checked = time.monotonic()  # when the server was last asked what it owes (see _owed)
        while self._running and not self._closing:
            await self._answered()
            try:
                messages = await sub.fetch(_BATCH, timeout=1.0)
                failing_since = None
                checked = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A timeout is nothing new, or no answer; another error is no answer. Once one of
                # those came, answers must come again within _REBIND_AFTER, or the pull consumer
                # is made again (its node of a cluster is gone).
                now = time.monotonic()
                if not isinstance(exc, TimeoutError | nats.errors.TimeoutError):
                    failing_since = failing_since or now
                    log.warning("%s: fetching failed (%r): retrying", self.stream, exc)
                    await asyncio.sleep(0.5)
                elif failing_since is None and now - checked >= _CHECK_IDLE_EVERY:
                    checked = now
                    if await self._owed():  # quiet, yet owed messages: as good as failing
                        failing_since = now - _REBIND_AFTER
                if failing_since is not None and now - failing_since >= _REBIND_AFTER:
                    try:
                        sub = await self._rebind(sub)
                        failing_since = None
                    except Exception as error:  # the cluster is still electing: again later
                        log.warning("%s: cannot make the consumer again yet (%r)", self.stream, error)
                continue
            try:
                await self._hand_over(messages)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # acknowledging failed (NATS away): what was not, comes again
                log.warning("%s: handing over failed (%r): reopening", self.stream, exc)
                self.lose(f"acknowledging failed: {exc!r}")

    async def _answered(self) -> None:
        """Wait while the connection is down or its request is answered: the answer (and a gap
        it shows) goes first, then the events that came after it."""
        while (not self._open or self.busy) and self._running and not self._closing:
            await asyncio.sleep(0.01)

    async def _hand_over(self, messages: list[Any]) -> None:
        """Hand ``messages`` to the client in order; a gap mark ends the connection as a loss."""
        await self._answered()  # a loss may have come while they were fetched
        if self._closing:  # fetched as it closed: not handed; given back for the next of this name
            await self._give_back(messages)
            return
        now_utc = _now()
        handed: list[Any] = []
        for message in messages:
            if message.headers and message.headers.get(MARK):
                await self._acknowledge(handed)
                await self._ack(message)
                self.lose(f"gap at the gateway on {message.subject}")
                while (not self._open or self.busy or not self._outbox.empty()) and self._running:
                    await asyncio.sleep(0.02)  # the new answer first, then what followed the gap
                now_utc = _now()
                continue
            if message.metadata.sequence.stream in self._recent:  # handed over before a remake
                await self._ack(message)
                continue
            self.listener.frame(message.data, now_utc)
            handed.append(message)
        await self._acknowledge(handed)

    async def _owed(self) -> bool:
        """Fetches bring nothing: does the server hold messages for it all the same? Some it
        delivered to a fetch whose answer was lost (a node of a cluster went away) wait for the
        acknowledgement wait (30 s) before they come again; others wait behind them."""
        try:
            info = await self.link.nc.jetstream(timeout=2.0).consumer_info(
                self.link.stream, self._consumer_name
            )
        except Exception:  # it cannot tell now: the fetches will
            return False
        return bool(info.num_ack_pending or info.num_pending)

    async def _give_back(self, messages: list[Any]) -> None:
        """Say ``messages`` were not taken (a NAK): the next consumer of this name gets them at
        once, not after JetStream's acknowledgement wait (30 s)."""
        for message in messages:
            with contextlib.suppress(Exception):  # unacknowledged all the same: they come again
                await message.nak()

    async def _ack(self, message: Any) -> None:
        await message.ack()
        self._acked = message.metadata.sequence.stream
        self._recent.put(self._acked, None)

    async def _acknowledge(self, handed: list[Any]) -> None:
        """Acknowledge ``handed`` once every subscriber has had it (see the module's rules)."""
        if not handed:
            return
        self.listener.flush()
        settled = getattr(self.listener, "settled", None)
        give_up = None
        while settled is not None and not settled():
            if self._closing:  # closing: its client may still deliver them, for a while
                give_up = give_up or time.monotonic() + _CLOSE_WAIT - 0.5
                if time.monotonic() >= give_up:  # not delivered: given back, not acknowledged
                    await self._give_back(handed)
                    return
            await asyncio.sleep(0.002)
        for message in handed:
            await self._ack(message)
        handed.clear()

    # --- losing and closing ----------------------------------------------------------------------------

    def lose(self, why: str) -> None:
        """End this connection as lost and open it again (on the loop)."""
        if not self._open or self._closing:
            return
        self._drop(release=True)
        self.listener.lost(ConnectionLostError(f"bus: {why}"), True)
        if not self.listener.wanted():
            self._running = False
            if self._fetcher is not None and self._fetcher is not asyncio.current_task():
                self._fetcher.cancel()
            self._fetcher = None
            self.link.runner.spawn(self._forget_consumer())
            self.listener.closed(ClientClosedError("no longer wanted"))
            return
        self.link.loop.call_later(_REOPEN_PAUSE, self._opening)

    def _drop(self, *, release: bool) -> None:
        self._open = False
        self.link.transports.discard(self)
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        conn, self.conn = self.conn, None
        if release and conn is not None:
            self.link.runner.spawn(self._release(conn))
        for sub in self._subs.values():
            self.link.runner.spawn(sub.unsubscribe())
        self._subs.clear()
        self._subject_refs.clear()
        self._topic_subjects.clear()
        self._live.clear()
        self._stored.clear()
        self._held.clear()  # not handed over: read again from the last one that was

    async def _release(self, conn: str) -> None:
        with contextlib.suppress(BusError):
            await self.link.request({"op": "release", "conn": conn}, 2.0)

    async def _close(self) -> None:
        was_open = self._open
        conn = self.conn
        self._drop(release=False)
        fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None:  # let it acknowledge what it handed over (it ends on _closing)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(fetcher, _CLOSE_WAIT)
        await self._forget_consumer()
        if was_open and conn is not None:
            await self._release(conn)
        self._running = False
        self.listener.closed(ClientClosedError("closed by the client"))

    async def _forget_consumer(self) -> None:
        """Closed for good: its pull consumer's name is free again, and an ephemeral one is
        deleted, so that a later subscription starts afresh instead of where this one stopped
        (and without the snapshot a new one gets)."""
        name, self._consumer_name = self._consumer_name, ""
        if not name:
            return
        self.link.consumers.discard(name)
        if self._durable is None:
            with contextlib.suppress(Exception):  # gone already, or NATS is: it expires unused
                await self.link.js.delete_consumer(self.link.stream, name)


def _now() -> datetime:
    return datetime.now(UTC)
