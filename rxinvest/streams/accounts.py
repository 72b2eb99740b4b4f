"""An account-stream connection (order states, order trades, positions, portfolio): one request on
every connection, every event to every subscriber (see :mod:`rxinvest.streams.connection`).

With a ``recovery`` (:class:`~rxinvest.protocol.recovery.AccountRecovery`), a reconnect's gap is
filled from the unary API. Rules (on top of the base's):

* Clocks: the ``Gap`` and ``Recovered`` markers show the gap on the client's clock (as the session's
  :class:`~rxinvest.protocol.AccountAccepted` gives it); the recovery's REST filters take it on the
  server's clock, as the session estimates it from the pings
  (:meth:`~rxinvest.protocol.AccountSession.server_gap`; the client's clock when no ping came).
* When an account is accepted again with a gap, its :class:`~rxinvest.derived.Gap` marker goes out
  at once, and its live events (and a refusal, if one comes) are held, in order, while the
  connection's recovery worker recovers. The reader thread never waits for the REST calls.
* The worker is one thread per connection (``rxinvest-recovery-<stream>``), started at the first
  gap and fed by a queue; it lives until the connection closes. One long-lived thread, not one per
  gap: with a thread per gap, the gaps of every account after a reconnect ran at once, each thread
  in a malloc arena of its own, and glibc keeps each arena's free memory, so RSS grew with the
  largest REST answers (a few hundred KiB) times the arenas used; now they go through one.
  Recoveries run one at a time, oldest gap first: an account's next gap waits for its previous
  one, and another account's recovery waits for the ones queued before it. That is acceptable
  because each one is bounded (below), a connection has few accounts and each account has at most
  one recovery in the queue, and the REST calls share one client and one rate limit anyway: held
  events wait at most the recoveries queued before theirs, each at most ``time_limit``.
* When the recovery ends, the worker delivers, in order: the recovered events (de-duplicated, see
  :mod:`rxinvest.protocol.recovery`), a :class:`~rxinvest.derived.Recovered` marker, then the held
  events; the account is then live again. Events put in mailboxes are decided under the lock and
  handed over outside it, as the base does; the hold ends under the lock only once nothing is left
  to hand over, so live events never overtake held ones.
* Another gap of the account while it recovers is held in its place too: its ``Gap`` marker goes out
  after the first recovery's events, and its own recovery starts then.
* A failed recovery (a REST error after the client's retries, or a bug) is logged and delivered as
  ``Recovered(error=...)``; the held events go out all the same. Nothing stops the stream or a thread.
* Every event delivered updates the account's :class:`~rxinvest.protocol.recovery.Seen`; after a
  recovery, live events that repeat what it emitted are dropped.
* A recovery takes at most the recovery's ``time_limit`` from its start (then it ends with an
  error), so held events wait a bounded time. ``close()`` abandons recoveries between calls (those
  still queued end at once, ``Recovered(error=...)``, their held events released) and waits for the
  worker at most ``join_timeout`` seconds (a call under way ends within the REST client's timeout).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime

import attrs

from rxinvest.derived import Gap, GapCause, Recovered
from rxinvest.protocol import (
    AccountAccepted,
    AccountRejected,
    AccountSession,
    Delivered,
    Outcome,
    StreamEvent,
)
from rxinvest.protocol.recovery import AccountRecovery, Seen, execute, reconcile
from rxinvest.streams.connection import Emit, ListenerTransport, Routed, StreamConnection
from rxinvest.streams.delivery import Mailbox

__all__ = ["AccountConnection"]

log = logging.getLogger("rxinvest.streams")

#: Rounds of handing held events over outside the lock before the last one is done under it: a
#: stream that never pauses must not keep a recovery from ending.
_ROUNDS = 8


class _Hold:
    """One gap of one account and the live outcomes that came after it, waiting for its recovery.

    ``gap`` is on the client's clock (the markers'), ``server_gap`` on the server's (the recovery's).
    ``boxes`` are the subscribers the gap concerns (they get the recovered events and the marker);
    ``marker`` is the gap's ``Gap`` marker when it is still to be delivered (a gap that came while an
    earlier one of the account was being recovered).
    """

    __slots__ = ("boxes", "gap", "items", "marker", "server_gap", "taken")

    def __init__(
        self,
        gap: tuple[datetime, datetime],
        boxes: list[Mailbox],
        marker: Gap | None = None,
        *,
        server_gap: tuple[datetime, datetime] | None = None,
    ) -> None:
        self.gap = gap
        self.server_gap = server_gap or gap
        self.boxes = boxes
        self.items: list[Routed] = []
        self.taken: list[Routed] = []  # taken from ``items`` to hand over, not handed yet
        self.marker = marker


class AccountConnection(StreamConnection):
    """One account-stream connection (one stream, one set of accounts), shared by its subscribers.

    ``recovery`` fills reconnect gaps from the unary API (None: gaps are only marked).
    ``recovered``, ``recoveries`` and ``recoveries_failed`` count, since the connection was
    made, the events recovery delivered, the recoveries that ended, and those that ended with an error.
    """

    session: AccountSession

    def __init__(
        self,
        transport_factory: ListenerTransport,
        emit: Emit,
        session: AccountSession,
        on_idle: Callable[[AccountConnection], None],
        *,
        recovery: AccountRecovery | None = None,
        join_timeout: float = 2.0,
    ) -> None:
        super().__init__(transport_factory, emit)
        self.session = session
        self.stream = session.stream.value
        self._on_idle = on_idle
        self._recovery = recovery
        self._join_timeout = join_timeout
        self._holds: dict[str, deque[_Hold]] = {}  # accounts recovering: their gaps, oldest first
        self._starting: list[tuple[str, _Hold]] = []  # recoveries to start once their Gap is out
        self._queue: deque[tuple[str, _Hold]] = deque()  # recoveries waiting for the worker (lock)
        self._wakeup = threading.Condition(self.lock)  # the worker waits on it for the queue
        self._worker: threading.Thread | None = None  # the recovery worker, while it runs (lock)
        self._cancel = threading.Event()
        self._retiring = False  # its last subscriber left: it closes, and takes no new one (lock)
        self.recovered = 0
        self.recoveries = 0
        self.recoveries_failed = 0

    def add(self, mailbox: Mailbox, *, strict: bool = False) -> bool:
        """Subscribe ``mailbox``; False if this connection is closing (its last subscriber left):
        the caller makes a new one, or the subscriber would get its completion, not its events."""
        with self.lock:
            if self._retiring or self.shut:
                return False
            self._attach(mailbox, self.session.accounts, strict)
            self._ensure_started()
        mailbox.kick()
        return True

    def remove(self, mailbox: Mailbox) -> None:
        mailbox.stop()
        with self.lock:
            self._subscribers.pop(mailbox, None)
            idle = self._retiring = not self._subscribers  # decided here: add() refuses from now on
        if idle:
            self._on_idle(self)
            self.close()

    def _boxes(self, outcome: Outcome) -> list[Mailbox]:
        return list(self._subscribers)  # every subscriber takes every account of the connection

    def wanted(self) -> bool:
        with self.lock:
            return bool(self._subscribers) and not self.shut

    @property
    def recovering(self) -> tuple[str, ...]:
        """The accounts whose live events wait for a recovery now."""
        with self.lock:
            return tuple(self._holds)

    def close(self) -> None:
        """Close for good: abandon the recoveries (see the rules) and wait for the worker at most
        ``join_timeout`` seconds (not at all when called from the worker, by a subscriber)."""
        self._cancel.set()
        super().close()
        with self.lock:
            self._wakeup.notify_all()  # under the lock: the worker cannot miss it between check and wait
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(self._join_timeout)

    # --- holding, under the lock (reader thread) -----------------------------------------------------

    def _route(self, outcomes: Iterable[Outcome]) -> list[Routed]:
        routed = super()._route(outcomes)
        recovery = self._recovery
        if recovery is None:
            return routed
        out: list[Routed] = []
        for item in routed:
            outcome, boxes, fails = item
            if isinstance(outcome, Delivered):
                account = getattr(outcome.event, "account_id", "")
                holds = self._holds.get(account)
                if holds is not None:
                    holds[-1].items.append(item)
                    continue
                seen = recovery.seen(account)
                event = seen.admit(outcome.event)
                if event is None:  # recovery emitted it already
                    continue
                seen.delivered(event)
                out.append(item if event is outcome.event else (Delivered((), event), boxes, fails))
            elif isinstance(outcome, AccountAccepted) and outcome.gap is not None:
                holds = self._holds.get(outcome.account_id)
                server_gap = self.session.server_gap(outcome.account_id)
                if holds is None:  # its Gap goes out now (the base delivers it), then the recovery starts
                    hold = _Hold(outcome.gap, boxes, server_gap=server_gap)
                    self._holds[outcome.account_id] = deque([hold])
                    self._starting.append((outcome.account_id, hold))
                    out.append(item)
                else:  # recovering already: this gap waits its turn, its marker with it
                    since, until = outcome.gap
                    marker = Gap(
                        cause=GapCause.RECONNECT, since=since, until=until, target=outcome.account_id
                    )
                    holds.append(_Hold(outcome.gap, boxes, marker, server_gap=server_gap))
                    self._noted(marker)  # recorded where the gap happened, delivered in its turn
                    out.append((attrs.evolve(outcome, gap=None), boxes, fails))
            elif isinstance(outcome, AccountRejected) and outcome.account_id in self._holds:
                self._holds[outcome.account_id][-1].items.append(item)
            else:
                out.append(item)
        return out

    def _deliver(self, routed: list[Routed]) -> None:
        super()._deliver(routed)
        if self._starting:  # only the reader thread appends (under the lock) and takes
            with self.lock:
                starting, self._starting = self._starting, []
            for account, hold in starting:
                self._start(account, hold)

    # --- recovering (worker thread) ------------------------------------------------------------------

    def _start(self, account: str, hold: _Hold) -> None:
        """Queue ``hold``'s recovery for the worker, starting the worker if none runs (any thread)."""
        with self.lock:
            self._queue.append((account, hold))
            if self._worker is not None:
                self._wakeup.notify()
                return
            # Started under the lock, so that close() never sees a worker it cannot join yet; the
            # new thread needs the lock only once start() has returned.
            self._worker = threading.Thread(
                target=self._work, name=f"rxinvest-recovery-{self.stream}", daemon=True
            )
            self._worker.start()

    def _work(self) -> None:
        """The worker thread: recover the queued gaps in order until the connection closes and
        the queue is empty (after close the queued ones end at once, abandoned). Never raises: an
        error is logged and the next recovery goes on."""
        while True:
            with self.lock:
                while not self._queue and not self._cancel.is_set():
                    self._wakeup.wait()
                if not self._queue:  # closed and nothing left; a later gap starts a new worker
                    self._worker = None
                    return
                account, hold = self._queue.popleft()
            try:
                self._recover(account, hold)
            except Exception:  # a bug in the last resort itself: the worker must serve the next ones
                log.exception("%s: the recovery worker failed on account %s", self.stream, account)

    def _recover(self, account: str, hold: _Hold) -> None:
        """Run the recovery of ``hold`` and release it (worker thread); whatever happens, the account's
        events flow on."""
        recovery = self._recovery
        assert recovery is not None
        events: list[StreamEvent] = []
        error = ""
        deadline = time.monotonic() + recovery.time_limit

        def stop() -> str:
            if self._cancel.is_set():
                return "recovery abandoned: the connection closed"
            if time.monotonic() > deadline:
                return f"recovery took longer than {recovery.time_limit:g} s"
            return ""

        try:
            with self.lock:
                plan = recovery.plan(account, hold.server_gap)
            execute(plan, recovery.call, stop=stop)
            events, error = plan.events(), plan.error
        except Exception as exc:  # a bug of ours must not keep the account's events held
            log.exception("%s: recovery of account %s failed", self.stream, account)
            error = f"internal error: {type(exc).__name__}: {exc}"
        if error and not self._cancel.is_set():
            log.warning("%s: the gap of account %s stays open: %s", self.stream, account, error)
        try:
            self._release(account, hold, events, error)
        except Exception:  # a bug: whatever it was, the held events must not stay held
            log.exception("%s: releasing the events of account %s failed", self.stream, account)
            self._unhold(account)

    def _unhold(self, account: str) -> None:
        """The last resort after a bug: end every hold of ``account``, delivering what waits in order
        (each later gap's marker before its events), unrecovered."""
        kicks: set[Mailbox] = set()
        refusals: list[Routed] = []
        with self.lock:
            holds = self._holds.pop(account, deque())
            for hold in holds:
                if hold.marker is not None:
                    for box in hold.boxes:
                        box.mark(hold.marker)
                        kicks.add(box)
                refusals += self._hand(hold.taken + hold.items, kicks, refusals=False)
                hold.taken, hold.items = [], []
        self._hand(refusals, kicks)
        for box in kicks:
            box.kick()

    def _release(self, account: str, hold: _Hold, recovered: list[StreamEvent], error: str) -> None:
        """Deliver what ``hold``'s recovery found, its marker, then the held outcomes (see the rules)."""
        recovery = self._recovery
        assert recovery is not None
        seen = recovery.seen(account)
        with self.lock:
            batch, hold.items = hold.items, []
            batch = hold.taken = self._admitted(seen, batch, reconciling=True)
            held = [outcome.event for outcome, _, _ in batch if isinstance(outcome, Delivered)]
            try:
                recovered = reconcile(seen, recovered, held)
            except Exception as exc:  # a bug: nothing recovered, the gap stays open, the stream goes on
                log.exception("%s: reconciling the recovery of account %s failed", self.stream, account)
                recovered, error = [], error or f"internal error: {type(exc).__name__}: {exc}"
            for event in held:
                seen.delivered(event)
            self.recoveries += 1
            self.recovered += len(recovered)
            self.recoveries_failed += bool(error)
        since, until = hold.gap
        marker = Recovered(target=account, since=since, until=until, events=len(recovered), error=error)
        kicks: set[Mailbox] = set()
        for box in hold.boxes:
            for event in recovered:
                box.put(event)
            box.mark(marker)
            kicks.add(box)
        self._hand(batch, kicks)
        hold.taken = []
        following: _Hold | None = None
        refusals: list[Routed] = []
        for round_ in range(_ROUNDS + 1):  # what came while this one handed over: in order, then live
            with self.lock:
                batch, hold.items = hold.items, []
                batch = hold.taken = self._admitted(seen, batch)
                last = not batch or round_ == _ROUNDS
                if last:
                    # Under the lock, so that nothing overtakes it; a refusal (it may run a subscriber's
                    # scheduler) waits until the lock is free: no event of its account follows it.
                    refusals = self._hand(batch, kicks, refusals=False)
                    hold.taken = []
                    holds = self._holds[account]
                    holds.popleft()
                    following = holds[0] if holds else None
                    if following is None:
                        del self._holds[account]
            if last:
                break
            self._hand(batch, kicks)
            hold.taken = []
        self._hand(refusals, kicks)
        for box in kicks:
            box.kick()
        if following is not None:  # even after close: it then ends at once, its events released
            if following.marker is not None:
                for box in following.boxes:
                    if box.mark(following.marker):
                        box.kick()
            self._start(account, following)

    @staticmethod
    def _admitted(seen: Seen, batch: list[Routed], *, reconciling: bool = False) -> list[Routed]:
        """Held outcomes less the live events that repeat a recovery's (under the lock); a straggler
        (``reconciling`` False) also counts as delivered now."""
        out: list[Routed] = []
        for item in batch:
            outcome, boxes, fails = item
            if isinstance(outcome, Delivered):
                event = seen.admit(outcome.event)
                if event is None:
                    continue
                if not reconciling:
                    seen.delivered(event)
                if event is not outcome.event:
                    item = (Delivered((), event), boxes, fails)
            out.append(item)
        return out

    def _hand(self, batch: list[Routed], kicks: set[Mailbox], *, refusals: bool = True) -> list[Routed]:
        """Put held outcomes in their mailboxes, in order (the kicks come after); refusals are
        delivered too, or returned when ``refusals`` is False."""
        left: list[Routed] = []
        for item in batch:
            outcome, boxes, fails = item
            if isinstance(outcome, Delivered):
                for box in boxes:
                    if box.put(outcome.event):
                        kicks.add(box)
            elif isinstance(outcome, AccountRejected):
                if refusals:
                    self._refused(outcome, boxes, fails)
                else:
                    left.append(item)
        return left
