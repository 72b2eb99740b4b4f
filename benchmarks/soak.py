"""Soak: the client under random faults for minutes, checked against the simulator's broker at the end.

Run: ``.venv/bin/python benchmarks/soak.py [--minutes 10] [--seed 1] [--speed 5] [--instruments 12]
[--fault-every 10] [--cache-limit N] [--recovery-limit N] [--sim-process] [--trace-memory [FRAMES]]
[--json]`` (not run
in CI; ``--minutes 0.3`` is a smoke test).

The embedded simulator runs at ``--speed`` (simulated seconds per real second); its accounts'
automatic traders start once every account stream is live. By default it runs in this process (the
client's ``target="sim"``). With ``--sim-process`` it runs in a spawned child process instead,
served by a ``multiprocessing`` manager (:class:`SimManager`, over a Unix socket with a random key;
the simulator itself listens on 127.0.0.1 only), and the client connects to it as to any server
(``rxinvest.connect(token, target=sim.base_url, rest_url=sim.rest_url)``); every use the soak
makes of the simulator (faults, connections, the traders switch, the market's clock, the broker
queries of the final check) goes through the manager's proxy (:class:`RemoteSim`). The child is
stopped however the run ends (an error, Ctrl-C: it ignores SIGINT and is shut down by the soak; it
also exits if the soak's process dies). In that mode the soak also pins glibc's mmap threshold
(:func:`pin_mmap_threshold`), so the RSS it reports follows the client's live memory rather than
what the allocator keeps free after the gap recoveries' REST answers. (Those answers used to grow
over a run: the simulated clock runs ahead of the wall clock, and the gap was taken on the client's
clock, so GetOrders "since the gap" listed nearly every order of the run. Recovery now takes the gap
on the server's clock, estimated from the pings: see :mod:`rxinvest.protocol.accounts`.) The client
subscribes:

* market data over the first ``--instruments`` instruments: trades, depth-10 books, one-minute
  candles, last prices and trading statuses, each with three subscribers: one with markers (it counts
  the messages and the gaps), a plain one, and a slow one (with markers, ``SLOW_SECONDS`` a message
  and a small backlog, so that it lags and its policy drops or conflates);
* order states, order trades, positions and portfolio of every account, with markers.

Every ``--fault-every`` seconds (jittered, seeded by ``--seed``) one open connection gets one fault
(``sim.set_connection_faults``): a TCP drop, a stall (the client's watchdog notices it), a 1011
close, malformed frames every few frames, or a drop whose reconnection is dropped again
(``sim.fault_next``). One fault at a time, never on a connection that was stalled (lifting a stall
would hide the loss): the run keeps making progress.

At the end the faults stop (stalled connections are cut, so the client reconnects at once), the
traders stop, the orders left active are cancelled, and the client is given up to ``SETTLE_SECONDS``
to catch up. Then the broker is the ground truth: every order's final state must have been
delivered on order states, every fill on order trades (streamed or recovered), the positions folded
from the positions stream (snapshots, then changes) must equal the broker's, and the last portfolio
of each account must hold the broker's quantities. GetOrders' filters see only orders created
today, so an order placed before midnight and cancelled without a fill inside a gap that spans it is
in no answer of the unary API: such orders are reported apart ("beyond the API"), not as lost.

Reported: messages per kind delivered (to the subscribers with markers), reconnects per stream,
gaps (markers) per source and cause, recovered and lost events per account kind, drops and
conflations per delivery policy (``client.metrics`` if the client has it, else ``client.deliveries``),
malformed frames skipped, the faults applied, the thread count and the RSS (MiB, from
``/proc/self/status``) over time with the RSS growth after warm-up (goal: under 5 %; the wire
codec's value caches, whose entries are reported too, fill during the first minutes; ``--cache-limit``
fills them within seconds), and whether an rxinvest thread died (``threading.excepthook``, or a
thread name gone). In process, that RSS includes the simulator's, which grows by design (its broker
keeps every order, state and fill: the ground truth of the final check), so its growth is not the
client's. With ``--sim-process`` it is the client's process alone (the client, its subscribers and
the soak's own records of what was delivered, which grow with the messages: every order id and
trade id), which is what the goal is about; the child's RSS is sampled with it and reported apart
(``sim_rss_mib``, ``sim_timeline``), over the same warm-up. Beside the RSS, the heap's live memory
("in use": glibc's ``mallinfo2`` in use plus pymalloc's allocated blocks, see :class:`Allocators`;
Linux with glibc only, 0 elsewhere), what each allocator holds (free memory it keeps included), the
soak's own records (measured apart: :meth:`AccountLog.records_bytes`) and the entries of the client's
recovery memories. Warm-up is defined in :func:`warm_sample_of`: the first minute (a quarter of a
shorter run), and until the codec's caches and the recovery memories that matter are full; growth
is from there to the end, with the verdict against 5 %. ``--recovery-limit`` bounds the recovery
memories lower, so that they fill within the run (a bound under the orders a recovery's answers
list makes it deliver again what it forgot: duplicates, never losses). A progress line every
``PROGRESS_SECONDS`` (on stderr with ``--json``).
``--trace-memory`` (off by default: it costs nothing then) also traces Python's allocations
(tracemalloc) and reports the Python heap's growth from warm-up (once the codec's caches are full,
if that is within the run's first half) to when the faults stop, split by the code that allocated
it: the simulator (``rxinvest/sim/``: its broker keeps every order, state, fill and operation by
design), the soak's own records (every order id and trade id delivered), the client (``rxinvest/``
outside ``sim/``) and other; in MiB, MiB a minute and MiB per 100k messages, with the top files and
lines of each (see :class:`HeapTrace`), beside the RSS growth meanwhile. Tracing slows the run
several times over (fewer messages, slower caches) and adds memory of its own: compare the heap's
growth with the RSS growth of a run without it. With ``--sim-process`` only this process is traced:
the "simulator" category is then empty (the proxy's calls count as the soak's).

Exit status 1 if anything was lost, a thread died, rxinvest reported an internal error or a
subscription failed; else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import inspect
import itertools
import json
import logging
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing.managers import BaseManager
from typing import Any, TextIO, TypeVar

import attrs
from reactivex import Observable

import rxinvest
from rxinvest import model as m
from rxinvest.derived import Gap, Refused, Subscribed
from rxinvest.sim import Faults, Simulator
from rxinvest.streams.events import ConnectionStatus, SubscriptionStatus

_T = TypeVar("_T")

SLOW_SECONDS = 0.005  # what the slow subscriber spends on each message, seconds
SLOW_BACKLOG = 200  # the slow subscriber's backlog limit (events) where its policy keeps every one
PING_DELAY = 5.0  # seconds between the server's pings: a stall is noticed within two of them
SAMPLE_SECONDS = 2.0  # seconds between samples of RSS and threads
PROGRESS_SECONDS = 30.0  # seconds between progress lines
METRICS_SECONDS = 1.0  # seconds between client.metrics snapshots
TIMELINE_POINTS = 40  # samples of RSS and threads the report keeps
WARMUP_SECONDS = 60.0  # the warm-up lasts this long, or a quarter of the run if that is shorter
LIVE_SECONDS = 10.0  # at most this long for the account streams to be confirmed at the start
SETTLE_SECONDS = 60.0  # at most this long for the client to catch up after the faults stop
QUIET_SECONDS = 3.0  # settled: every connection open and no account event for this long
FAULT_KINDS = {"drop": 3, "stall": 1, "close_1011": 3, "malformed": 2, "drop_twice": 1}  # weights
RECOVERY_SMALL = 1000  # entries: a recovery memory holding fewer weighs little (see recovery_full_at)
GAP_SLACK = timedelta(seconds=1)  # how far the simulator's clock may stray from the wall clock
ACCOUNT_KINDS = ("order_states", "order_trades", "positions", "portfolio")


# --- what the subscribers see ---------------------------------------------------------------------


def _marker_name(item: object) -> str | None:
    """The marker class's name, or None for an event. By name, so that a marker this script does
    not import (``Recovered`` before gap recovery lands) is still recognised."""
    name = type(item).__name__
    if isinstance(item, Gap | Refused | Subscribed) or name == "Recovered":
        return name
    return None


class Tally:
    """A market-data subscriber that counts: messages by event class, gaps by cause (and the events
    overflow gaps say were dropped). ``slow``: it sleeps ``SLOW_SECONDS`` on every message."""

    def __init__(self, slow: bool = False) -> None:
        self.slow = slow
        self.messages: Counter[str] = Counter()
        self.gaps: Counter[str] = Counter()
        self.gap_dropped = 0
        self.errors: list[str] = []

    def on_next(self, item: object) -> None:
        marker = _marker_name(item)
        if marker is None:
            self.messages[type(item).__name__] += 1
            if self.slow:
                time.sleep(SLOW_SECONDS)
        elif isinstance(item, Gap):
            self.gaps[item.cause.name] += 1
            self.gap_dropped += item.dropped

    def on_error(self, error: Exception) -> None:
        self.errors.append(f"{type(error).__name__}: {error}")


def _money(value: m.Money | None) -> Decimal:
    return value.amount if value is not None else Decimal(0)


@attrs.define
class Positions:
    """One account's positions as a positions stream tells them: money (rub) by currency as
    (available, blocked), and security units by instrument uid as (balance, blocked)."""

    money: dict[str, tuple[Decimal, Decimal]] = attrs.field(factory=dict)
    securities: dict[str, tuple[int, int]] = attrs.field(factory=dict)

    @classmethod
    def of(cls, snapshot: m.PositionsResponse) -> Positions:
        """The full snapshot (``initial_positions``, or the broker's own answer)."""
        blocked = {money.currency: money.amount for money in snapshot.blocked}
        positions = cls()
        for money in snapshot.money:
            positions.money[money.currency] = (money.amount, blocked.pop(money.currency, Decimal(0)))
        for currency, amount in blocked.items():
            positions.money[currency] = (Decimal(0), amount)
        positions._securities(snapshot.securities)
        return positions

    def apply(self, change: m.PositionData) -> None:
        """A change: what it lists replaces what was known of those positions."""
        for money in change.money:
            held = money.available_value or money.blocked_value
            if held is not None:
                self.money[held.currency] = (_money(money.available_value), _money(money.blocked_value))
        self._securities(change.securities)

    def _securities(self, securities: Iterable[m.PositionsSecurities]) -> None:
        for security in securities:
            if security.balance or security.blocked:
                self.securities[security.instrument_uid] = (security.balance, security.blocked)
            else:
                self.securities.pop(security.instrument_uid, None)

    def differences(self, other: Positions) -> list[str]:
        """What differs from ``other``, one line per position."""
        return _differences("money", self.money, other.money) + _differences(
            "units", self.securities, other.securities
        )


def _differences(what: str, mine: Mapping[str, object], theirs: Mapping[str, object]) -> list[str]:
    """One line per key whose value differs between the client's view and the broker's."""
    return [
        f"{what} {key}: client {mine.get(key)} broker {theirs.get(key)}"
        for key in sorted(set(mine) | set(theirs))
        if mine.get(key) != theirs.get(key)
    ]


def _portfolio_quantities(portfolio: m.PortfolioResponse) -> dict[str, tuple[Decimal, Decimal]]:
    """A portfolio's securities as instrument uid -> (units, blocked units); money is left out (its
    value moves with the market)."""
    return {
        p.instrument_uid: (p.quantity or Decimal(0), p.blocked_lots or Decimal(0))
        for p in portfolio.positions
        if p.instrument_type != "currency"
    }


class AccountLog:
    """The subscriber of one account source (with markers): what it delivered, folded for the check.

    Thread-safe (the check reads while the source may still deliver).
    """

    def __init__(
        self, kind: str, market_now: Callable[[], datetime] | None = None, speed: float = 1.0
    ) -> None:
        self.kind = kind
        # The market's clock (the broker stamps orders with it), which lags the wall clock times
        # speed when the simulator's loop is late: gap windows are mapped to it when they arrive.
        self._market_now = market_now
        self._speed = speed
        self.lock = threading.Lock()
        self.messages: Counter[str] = Counter()
        self.gaps = 0
        self.gap_windows: list[tuple[str, datetime, datetime]] = []  # (target, since, until), market time
        self.recovered = 0  # events that Recovered markers say were recovered
        self.recovery_errors: list[str] = []
        self.errors: list[str] = []
        self.last_event = time.monotonic()
        # The ids delivered grow with the run; kept in the client's process they would count as its
        # RSS growth. So they are spilled to an unnamed temporary file (a line per order state or
        # fill, buffered) and read back once, at the check: order states as, per order id, a bit mask
        # of the states seen (bit i: the i-th distinct _final() tuple, of which there are few).
        self._spill: TextIO = tempfile.TemporaryFile("w+", encoding="utf-8")  # closed at the check
        self._loaded = False
        self._order_states: dict[str, int] = {}  # order id -> mask of the states seen (once loaded)
        self._state_bits: dict[tuple[Any, ...], int] = {}  # _final() tuple -> its bit
        self._trade_ids: set[str] = set()
        self.positions: dict[str, Positions] = {}  # by account
        self.portfolios: dict[str, m.PortfolioResponse] = {}  # the last one of each account

    def on_next(self, item: object) -> None:
        with self.lock:
            marker = _marker_name(item)
            if isinstance(item, Gap):
                self.gaps += 1
                self.gap_windows.append((item.target, *self._to_market(item.since, item.until)))
            elif marker == "Recovered":
                self.recovered += int(getattr(item, "events", 0))
                error = getattr(item, "error", "")
                if error:
                    self.recovery_errors.append(f"{getattr(item, 'target', '?')}: {error}")
            elif marker is None:
                self.messages[type(item).__name__] += 1
                self.last_event = time.monotonic()
                self._fold(item)

    def _to_market(self, *moments: datetime) -> tuple[datetime, ...]:
        """Wall-clock moments just past, as the market's clock read them (identity without one)."""
        if self._market_now is None:
            return moments
        market, wall = self._market_now(), datetime.now(UTC)
        return tuple(market - (wall - moment) * self._speed for moment in moments)

    def _fold(self, item: object) -> None:
        if isinstance(item, m.OrderState):
            final = _final(item)
            bit = self._state_bits.setdefault(final, len(self._state_bits))
            if self._loaded:  # after the check began: in memory
                self._order_states[item.order_id] = self._order_states.get(item.order_id, 0) | 1 << bit
            else:
                self._spill.write(f"o {bit} {item.order_id}\n")
        elif isinstance(item, m.OrderTrades):
            if self._loaded:
                self._trade_ids.update(trade.trade_id for trade in item.trades)
            else:
                self._spill.writelines(f"t {trade.trade_id}\n" for trade in item.trades)
        elif isinstance(item, m.PositionsResponse):
            self.positions[item.account_id] = Positions.of(item)
        elif isinstance(item, m.PositionData):
            self.positions.setdefault(item.account_id, Positions()).apply(item)
        elif isinstance(item, m.PortfolioResponse):
            self.portfolios[item.account_id] = item

    def _load(self) -> None:
        """Read the spilled ids back (once, under the lock, at the check); later ones are kept in
        memory."""
        if self._loaded:
            return
        self._spill.seek(0)
        for line in self._spill:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "o":
                bit, _, order_id = rest.partition(" ")
                self._order_states[order_id] = self._order_states.get(order_id, 0) | 1 << int(bit)
            else:
                self._trade_ids.add(rest)
        self._spill.close()
        self._loaded = True

    @property
    def trade_ids(self) -> set[str]:
        """The trade ids delivered (read back from the spill; under the lock)."""
        self._load()
        return self._trade_ids

    def seen_state(self, order_id: str, final: tuple[Any, ...]) -> tuple[bool, bool]:
        """(whether any state of the order was delivered, whether ``final`` was); under the lock."""
        self._load()
        mask = self._order_states.get(order_id, 0)
        bit = self._state_bits.get(final)
        return bool(mask), bit is not None and bool(mask >> bit & 1)

    def records_bytes(self) -> int:
        """What this log's records of delivered events take now, bytes (``sys.getsizeof`` of the
        containers and what they hold; strings shared with other objects are counted all the same)."""
        with self.lock:  # the ids are on disk until the check
            size = sys.getsizeof(self._order_states) + sys.getsizeof(self._trade_ids)
            size += sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in self._order_states.items())
            size += sum(map(sys.getsizeof, self._trade_ids))
            size += sys.getsizeof(self.gap_windows) + 200 * len(
                self.gap_windows
            )  # 3-tuples of a str, 2 times
            return size

    def on_error(self, error: Exception) -> None:
        self.errors.append(f"{type(error).__name__}: {error}")


def _final(state: m.OrderState) -> tuple[Any, ...]:
    """What must match between the broker's last state of an order and one the client delivered."""
    return (state.execution_report_status.name, state.lots_executed, state.lots_left, state.lots_cancelled)


# --- the process: threads, memory, logs -----------------------------------------------------------


def rss_mib() -> float:
    """This process's resident set, MiB (``VmRSS`` of ``/proc/self/status``; 0 where there is none)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pin_mmap_threshold(size: int = 128 * 1024) -> bool:
    """glibc only: fix malloc's mmap threshold (``M_MMAP_THRESHOLD``, which also stops its dynamic
    rise). Otherwise the first freed mmapped block (a gap recovery's REST answer, 0.1-0.5 MiB)
    raises it and doubles the trim threshold; later answers then come from the per-thread arenas,
    each of which keeps up to the trim threshold free, so RSS follows the largest answer so far
    times the number of arenas, not live memory. A process-wide setting: the soak's choice, never
    the library's. False where there is no glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, size))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


class _Mallinfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc 2.33 and later): ten ``size_t``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
            "keepcost",
        )
    ]  # fmt: skip


class Allocators:
    """This process's allocators, read where that is possible (glibc 2.33+ on Linux, CPython's
    pymalloc); a reading is None elsewhere (macOS, musl, ``PYTHONMALLOC=malloc`` for pymalloc).

    * glibc, in use: ``uordblks + hblkhd`` of ``mallinfo2()`` (chunks handed out, in every arena, and
      mmapped blocks); held: ``arena + hblkhd`` (the arenas' whole size, their free chunks included).
    * pymalloc, in use: its "bytes in allocated blocks" (``_PyObject_DebugMallocStats``, written to
      an ``open_memstream``). Its arenas are mmapped, not malloc'd: they are not in glibc's numbers.

    In use, the sum, is the heap's live memory: unlike RSS, it does not count free memory that an
    allocator keeps (glibc's per-thread arenas, pymalloc's partly used arenas). Called from the
    sampling thread only; each reading takes the allocator's locks for a moment (milliseconds).
    """

    def __init__(self) -> None:
        self._mallinfo2: Any = None
        self._libc: Any = None
        self._stats: Any = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallinfo2 = libc.mallinfo2
        except (OSError, AttributeError):
            return
        mallinfo2.restype, mallinfo2.argtypes = _Mallinfo2, []
        self._mallinfo2, self._libc = mallinfo2, libc
        try:
            stats = ctypes.pythonapi._PyObject_DebugMallocStats
            memstream = libc.open_memstream
        except AttributeError:
            return
        stats.restype, stats.argtypes = ctypes.c_int, [ctypes.c_void_p]
        memstream.restype = ctypes.c_void_p
        memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
        libc.fclose.argtypes = [ctypes.c_void_p]
        libc.free.argtypes = [ctypes.c_void_p]
        self._stats = stats

    def glibc_mib(self) -> tuple[float, float] | None:
        """(in use, held) MiB, or None without glibc's ``mallinfo2``."""
        if self._mallinfo2 is None:
            return None
        info = self._mallinfo2()
        return (info.uordblks + info.hblkhd) / (1 << 20), (info.arena + info.hblkhd) / (1 << 20)

    def pymalloc_mib(self) -> tuple[float, float] | None:
        """pymalloc's (bytes in allocated blocks, bytes of its arenas), MiB, or None where it cannot
        be read (or is off). An arena goes back to the system only once all its blocks are free."""
        if self._stats is None:
            return None
        libc, buffer, size = self._libc, ctypes.c_void_p(), ctypes.c_size_t()
        stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
        if not stream:
            return None
        try:
            used = self._stats(stream)  # 0: pymalloc is not in use
        finally:
            libc.fclose(stream)  # sets buffer and size
        try:
            text = (
                ctypes.string_at(buffer.value, size.value).decode("ascii", "replace") if buffer.value else ""
            )
        finally:
            libc.free(buffer)
        found: dict[str, float] = {}
        for line in text.splitlines():
            for key in ("# bytes in allocated blocks", "Total"):  # the first "Total": the arenas
                if used and line.startswith(key) and key not in found:
                    found[key] = int(line.rpartition("=")[2].strip().replace(",", "")) / (1 << 20)
        if len(found) < 2:
            return None
        return found["# bytes in allocated blocks"], found["Total"]


def recovery_entries(client: Any) -> tuple[dict[str, int], int]:
    """The account streams' recovery memories (a ``Seen`` per stream and account, six LRUs each):
    the entries each holds now, by "stream account memory", and the bound of each. Private names,
    read only to explain RSS growth (they fill with every order and fill delivered, up to their
    bound, ``--recovery-limit``); ({}, 0) where the client has none."""

    def read() -> tuple[dict[str, int], int]:
        entries: dict[str, int] = {}
        bound = 0
        for connection in list(getattr(client, "_accounts", {}).values()):
            recovery = getattr(connection, "_recovery", None)
            for account, seen in list(getattr(recovery, "_seen", {}).items()):
                for name, lru in list(vars(seen).items()):
                    if hasattr(lru, "_limit"):
                        entries[f"{connection.stream} {account} {name}"] = len(lru)
                        bound = max(bound, lru._limit)
        return entries, bound

    return _retry(read)


def bound_recovery_memories(limit: int) -> None:
    """``--recovery-limit``: every recovery memory the client makes from now on keeps ``limit``
    entries (the ``limit`` of :class:`~rxinvest.protocol.recovery.AccountRecovery`, which the client
    does not expose), so that they fill within the run's first minutes, as ``--cache-limit`` does for
    the codec's caches. A smaller memory can only make recovery re-deliver (never lose) an event
    that it forgot was delivered, as long as it holds every order active at once."""
    from rxinvest.protocol.recovery import AccountRecovery

    defaults = AccountRecovery.__init__.__kwdefaults__
    if defaults is None or "limit" not in defaults:  # the library changed: say so, do not guess
        raise SystemExit("--recovery-limit: AccountRecovery takes no keyword-only limit")
    defaults["limit"] = limit


def decode_cache_entries() -> tuple[int, ...]:
    """Entries in each of the wire codec's value caches now (bounded: each forgets its oldest
    entries when it reaches ``CACHE_LIMIT``). They fill over the first minutes, each at its own
    pace, which shows as RSS growth; private names, read only to explain that growth, () where the
    codec has none."""
    from rxinvest.wire import codec

    caches = (getattr(codec, name, None) for name in ("_quotations", "_moneys", "_level_cache", "_int64s"))
    return tuple(len(cache) for cache in caches if isinstance(cache, dict))


def rxinvest_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("rxinvest")}


class ThreadWatch:
    """Records every exception that ends a thread (``threading.excepthook``), then lets the previous
    hook report it as usual."""

    def __init__(self) -> None:
        self.deaths: list[str] = []
        self._previous = threading.excepthook

    def __enter__(self) -> ThreadWatch:
        threading.excepthook = self._hook
        return self

    def __exit__(self, *exc: object) -> None:
        threading.excepthook = self._previous

    def _hook(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        self.deaths.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")
        self._previous(args)


class LogCount(logging.Handler):
    """Counts rxinvest's log records: malformed frames skipped, and errors (first few kept). Being a
    handler of the ``rxinvest`` logger, it also keeps the warnings of a long run off the terminal."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.malformed = 0
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            if len(self.errors) < 5:
                self.errors.append(f"{record.name}: {message[:200]}")
        elif "malformed" in message:
            self.malformed += 1


@dataclass(slots=True)
class Sample:
    """One look at the process, every ``SAMPLE_SECONDS``. The soak keeps every one for its report:
    compact, so that they add little to the RSS they measure (see :meth:`Soak.keep`)."""

    at: float  # seconds since the start
    rss_mib: float
    threads: int
    messages: int
    caches: tuple[int, ...] = ()  # entries in each decode cache
    sim_rss_mib: float = 0.0  # --sim-process: the simulator's process's RSS (0 in process)
    glibc_mib: float = 0.0  # glibc's in use (0: not readable), see Allocators
    glibc_held_mib: float = 0.0  # glibc's arenas and mmapped blocks, free chunks included
    pymalloc_mib: float = 0.0  # pymalloc's allocated blocks (0: not readable)
    pymalloc_held_mib: float = 0.0  # pymalloc's arenas, free blocks included
    records_mib: float = 0.0  # the soak's own records of what was delivered (AccountLog.records_bytes)
    # The recovery memories' entries, each (recovery_entries): only the newest sample keeps them (a
    # few dozen per sample, 8 KiB, would grow the RSS ~0.5 % a minute); every one keeps their total
    # and which were full (one frozenset shared by the samples that saw the same ones).
    recovery: dict[str, int] = field(default_factory=dict)
    recovery_bound: int = 0  # the bound of each
    recovery_total: int = 0  # entries in all of them
    recovery_full: frozenset[str] = frozenset()  # the memories at their bound

    @property
    def in_use_mib(self) -> float:
        """The heap's live memory: glibc's in use plus pymalloc's (0 where neither is readable)."""
        return self.glibc_mib + self.pymalloc_mib


_NO_ENTRIES: dict[str, int] = {}  # a kept sample's recovery entries once a newer one came (never changed)


# --- --sim-process: the simulator in a child process of its own ------------------------------------


class SimService:
    """The simulator in the child process, and every call the soak makes of it, as methods (a
    manager's proxy reaches methods only); every answer is picklable (attrs frozen classes, tuples,
    datetimes). The broker is read as in process: from a thread of its own, so a read may meet the
    loop changing a dict (RuntimeError, which the proxy re-raises, and :func:`_retry` retries)."""

    def __init__(self, options: Mapping[str, Any], cache_limit: int | None) -> None:
        if cache_limit is not None:  # as in the client's process, so that the two compare
            from rxinvest.wire import codec

            codec.CACHE_LIMIT = cache_limit  # type: ignore[misc]
        self.sim = Simulator(**options).start()  # on 127.0.0.1: the simulator refuses other hosts

    def info(self) -> dict[str, Any]:
        sim = self.sim
        return {
            "base_url": sim.base_url,
            "rest_url": sim.rest_url,
            "token": sim.token,
            "accounts": sim.accounts,
            "instruments": sim.instruments,
            "speed": sim.speed,
            "timeout": sim.timeout,
            "pid": os.getpid(),
        }

    def rss_mib(self) -> float:
        return rss_mib()

    def set_trader(self, on: bool) -> None:
        self.sim.trader = on

    def market_now(self) -> datetime:
        return self.sim.market.now

    def connections(self) -> tuple[Any, ...]:
        return self.sim.connections()

    def set_connection_faults(self, connection_id: int, faults: Faults) -> None:
        self.sim.set_connection_faults(connection_id, faults)

    def fault_next(self, faults: Faults, count: int = 1) -> None:
        self.sim.fault_next(faults, count)

    def set_faults(self, faults: Faults) -> None:
        self.sim.set_faults(faults)

    def cancel_order(self, account_id: str, order_id: str) -> int:
        """Cancel; returns how many events it caused (the events stay here)."""
        return len(self.sim.cancel_order(account_id, order_id))

    def orders(self, account_id: str) -> tuple[m.OrderState, ...]:
        return tuple(broker_orders(self.sim.broker, account_id).values())

    def active_orders(self, account_id: str) -> tuple[m.OrderState, ...]:
        return self.sim.broker.active_orders(account_id)

    def fills(self, account_id: str) -> tuple[Any, ...]:
        return self.sim.broker.fills(account_id)

    def positions(self, account_id: str, now: datetime) -> m.PositionsResponse:
        return self.sim.broker.positions(account_id, now)

    def portfolio(self, account_id: str, quotes: Mapping[str, Any]) -> m.PortfolioResponse:
        return self.sim.broker.portfolio(account_id, quotes)

    def stop(self) -> None:
        self.sim.stop()


class SimManager(BaseManager):
    """Serves a :class:`SimService` from a spawned child process, over a Unix socket in a private
    temporary directory (the manager's default address on Linux: nothing on the network), with a
    random key; the child ignores SIGINT (the manager's server does), so Ctrl-C reaches the soak
    only, which stops it."""


SimManager.register("SimService", SimService)


def _watch_parent() -> None:
    """In the child: exit when the soak's process is gone, however it ended (SIGKILL too)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        from multiprocessing.connection import wait

        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="soak-parent-watch", daemon=True).start()


class _RemoteMarket:
    def __init__(self, service: SimService) -> None:  # its proxy: the same methods
        self._service = service

    @property
    def now(self) -> datetime:
        return self._service.market_now()


class _RemoteBroker:
    """The broker queries the soak makes (``broker.orders`` ...), through the child's service."""

    def __init__(self, service: SimService) -> None:  # its proxy: the same methods
        self._service = service

    def orders(self, account_id: str) -> tuple[m.OrderState, ...]:
        return self._service.orders(account_id)

    def active_orders(self, account_id: str) -> tuple[m.OrderState, ...]:
        return self._service.active_orders(account_id)

    def fills(self, account_id: str) -> tuple[Any, ...]:
        return self._service.fills(account_id)

    def positions(self, account_id: str, now: datetime) -> m.PositionsResponse:
        return self._service.positions(account_id, now)

    def portfolio(self, account_id: str, quotes: Mapping[str, Any]) -> m.PortfolioResponse:
        return self._service.portfolio(account_id, dict(quotes))


class RemoteSim:
    """The soak's view of the simulator in the child: what it uses of a :class:`Simulator`
    (attributes, ``trader``, ``market.now``, ``broker`` queries, faults, connections), each a call
    through the manager's proxy (one connection per calling thread), plus the child's RSS."""

    def __init__(self, service: SimService) -> None:  # its proxy: the same methods
        self._service = service
        info = service.info()
        self.base_url: str = info["base_url"]
        self.rest_url: str = info["rest_url"]
        self.token: str = info["token"]
        self.accounts: tuple[str, ...] = info["accounts"]
        self.instruments: tuple[Any, ...] = info["instruments"]
        self.speed: float = info["speed"]
        self.timeout: float = info["timeout"]
        self.pid: int = info["pid"]
        self.market = _RemoteMarket(service)
        self.broker = _RemoteBroker(service)

    @property
    def trader(self) -> bool:
        raise AttributeError("write-only through the proxy")

    @trader.setter
    def trader(self, on: bool) -> None:
        self._service.set_trader(on)

    def rss_mib(self) -> float:
        return self._service.rss_mib()

    def connections(self) -> tuple[Any, ...]:
        return self._service.connections()

    def set_connection_faults(self, connection_id: int, faults: Faults) -> None:
        self._service.set_connection_faults(connection_id, faults)

    def fault_next(self, faults: Faults, count: int = 1) -> None:
        self._service.fault_next(faults, count)

    def set_faults(self, faults: Faults) -> None:
        self._service.set_faults(faults)

    def cancel_order(self, account_id: str, order_id: str) -> int:
        return self._service.cancel_order(account_id, order_id)


@contextlib.contextmanager
def sim_process(options: Mapping[str, Any], cache_limit: int | None) -> Iterator[RemoteSim]:
    """A simulator in a spawned child process for the duration of a ``with`` block: stopped, and
    the child ended, however the block ends (the manager's shutdown terminates a child that does
    not exit within a second); the child also exits if this process dies."""
    manager = SimManager(ctx=multiprocessing.get_context("spawn"))  # a clean child: no tracemalloc
    manager.start(_watch_parent)
    try:
        service: SimService = manager.SimService(dict(options), cache_limit)  # type: ignore[attr-defined]
        try:
            yield RemoteSim(service)
        finally:
            with contextlib.suppress(Exception):  # the child may be gone already
                service.stop()
    finally:
        manager.shutdown()


# --- --trace-memory: the Python heap's growth, by whose code allocated it ---------------------------

TRACE_FRAMES = 64  # frames kept per allocation: enough to reach the bottom of a thread's stack
TRACE_TOP = 8  # lines reported per category
HEAP_CATEGORIES = ("simulator", "soak", "client", "other")


class HeapTrace:
    """``--trace-memory``: tracemalloc from before the client starts; a baseline after warm-up (taken
    again each time a codec cache is first full within the run's first half, so that, as for the
    RSS, growth is measured once the caches are full), and a last look when the faults stop.

    Each live block is put in the category of the code that allocated it, from its whole stack
    (``TRACE_FRAMES`` frames): "simulator" if any frame is in ``rxinvest/sim/`` (its loop thread,
    its REST threads, and the soak's calls into it); else the innermost frame of this script
    ("soak": its own records) or of ``rxinvest/`` ("client"), whichever is nearer the allocation;
    else "other" (no frame of either: stdlib or third-party threads). A category's lines are its own
    code's innermost frame, and the innermost frame overall where that differs (what it called:
    reactivex, websockets, the stdlib ...). This class's own allocations are left out.

    tracemalloc slows the run and holds memory of its own (reported): the RSS of a traced run is not
    that of a plain one, compare the heap growth with the RSS growth of a run without this option.
    """

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.client_dir = os.path.dirname(os.path.abspath(rxinvest.__file__)) + os.sep
        self.sim_dir = os.path.join(self.client_dir, "sim") + os.sep
        self.soak_file = os.path.abspath(__file__)
        lines, first = inspect.getsourcelines(HeapTrace)
        self.own = range(first, first + len(lines))  # this class's lines in this script
        self.baseline: dict[tuple[str, str, str], list[int]] | None = None
        self.baseline_at = 0.0
        self.baselines = 0  # how many times the baseline was taken
        self.end: dict[tuple[str, str, str], list[int]] | None = None
        self.end_at = 0.0
        self.overhead = (0, 0)  # tracemalloc's own memory at the baseline, at the end
        self.truncated = (0, 0)  # blocks at the end whose stack was cut to `frames`, of all blocks
        self._cleared: set[int] = set()  # codec caches seen cleared once
        self._last_caches: tuple[int, ...] = ()
        tracemalloc.start(frames)

    def _aggregate(self) -> tuple[dict[tuple[str, str, str], list[int]], int, int]:
        """Live blocks now: (category, own line, innermost line) -> [bytes, blocks]; blocks with a
        truncated stack, all blocks."""
        import _tracemalloc

        gc.collect()  # cyclic garbage is not growth
        # (domain, size, frames from the most recent, frames before truncation): what take_snapshot()
        # wraps; read raw, as the stacks are shared between blocks and classified once each.
        traces: Sequence[Any] = _tracemalloc._get_traces()
        kinds: dict[int, tuple[str, str, str] | None] = {}
        totals: dict[tuple[str, str, str], list[int]] = {}
        truncated = 0
        for _domain, size, stack, depth in traces:
            if id(stack) in kinds:
                key = kinds[id(stack)]
            else:
                key = kinds[id(stack)] = self._classify(stack)
            if key is None:
                continue
            if depth is not None and depth > len(stack):
                truncated += 1
            total = totals.get(key)
            if total is None:
                totals[key] = [size, 1]
            else:
                total[0] += size
                total[1] += 1
        count = len(traces)
        del traces, kinds
        return totals, truncated, count

    def _classify(self, stack: tuple[tuple[str, int], ...]) -> tuple[str, str, str] | None:
        """A stack (innermost frame first) -> (category, its own line, innermost line); None for this
        class's own allocations."""
        own: tuple[str, str] | None = None  # (category, line) of the innermost soak or client frame
        sim = ""
        for filename, lineno in stack:
            if filename == self.soak_file:
                if lineno in self.own:
                    return None
                own = own or ("soak", f"soak.py:{lineno}")
            elif filename.startswith(self.sim_dir):
                sim = sim or f"{filename[len(self.client_dir) :]}:{lineno}"
            elif filename.startswith(self.client_dir):
                own = own or ("client", f"{filename[len(self.client_dir) :]}:{lineno}")
        innermost = self._short(*stack[0]) if stack else "?"
        if sim:
            return "simulator", sim, innermost
        if own is not None:
            return own[0], own[1], innermost
        return "other", innermost, innermost

    def _short(self, filename: str, lineno: int) -> str:
        if filename.startswith(self.client_dir):
            return f"{filename[len(self.client_dir) :]}:{lineno}"
        if filename == self.soak_file:
            return f"soak.py:{lineno}"
        for marker in ("site-packages/", "lib/python3."):
            at = filename.rfind(marker)
            if at >= 0:
                rest = filename[at + len(marker) :]
                return f"{rest.split('/', 1)[1] if marker.startswith('lib/') else rest}:{lineno}"
        return f"{filename}:{lineno}"

    def look(self, sample: Sample, warm: float, duration: float) -> None:
        """At each sample: the baseline once warm, again when a codec cache is first full (within
        the first half of the run)."""
        from rxinvest.wire.codec import CACHE_LIMIT

        cleared = {  # full: at its bound, or it forgot entries (it does only when full)
            i
            for i, n in enumerate(sample.caches)
            if i < len(self._last_caches) and (n < self._last_caches[i] or n >= CACHE_LIMIT)
        } - self._cleared
        self._last_caches = sample.caches
        self._cleared |= cleared
        due = self.baseline is None and sample.at >= warm
        due = due or (self.baseline is not None and bool(cleared) and sample.at <= duration / 2)
        if due:
            self.baseline, _, _ = self._aggregate()
            self.baseline_at = sample.at
            self.baselines += 1
            self.overhead = (tracemalloc.get_tracemalloc_memory(), 0)

    def finish(self, at: float) -> None:
        """The last look (when the faults stop); tracing stops."""
        if self.baseline is None:
            self.baseline, _, _ = self._aggregate()
            self.baseline_at = at
        self.end, truncated, count = self._aggregate()
        self.end_at = at
        self.truncated = (truncated, count)
        self.overhead = (self.overhead[0], tracemalloc.get_tracemalloc_memory())
        tracemalloc.stop()

    def report(self, samples: list[Sample]) -> dict[str, Any]:
        """Python heap MiB per category at the baseline and at the end, the growth (MiB, MiB a
        minute), its top lines per category; beside it the RSS growth over the same time."""
        assert self.baseline is not None
        assert self.end is not None
        mib = 1 << 20
        minutes = max(self.end_at - self.baseline_at, 1.0) / 60
        growth: dict[tuple[str, str, str], list[int]] = {}
        for key in self.baseline.keys() | self.end.keys():
            before, after = self.baseline.get(key, [0, 0]), self.end.get(key, [0, 0])
            growth[key] = [after[0] - before[0], after[1] - before[1]]

        def by_category(table: Mapping[tuple[str, str, str], list[int]]) -> dict[str, float]:
            sums = dict.fromkeys(HEAP_CATEGORIES, 0)
            for (category, _, _), (size, _) in table.items():
                sums[category] += size
            return {c: round(n / mib, 2) for c, n in sums.items()}

        grown = by_category(growth)
        top: dict[str, list[tuple[str, float, int]]] = {}
        files: dict[str, dict[str, float]] = {}
        for category in HEAP_CATEGORIES:
            lines: Counter[str] = Counter()
            blocks: Counter[str] = Counter()
            by_file: Counter[str] = Counter()
            for (cat, line, innermost), (size, count) in growth.items():
                if cat == category:
                    name = line if innermost == line else f"{line} via {innermost}"
                    lines[name] += size
                    blocks[name] += count
                    by_file[line.rpartition(":")[0]] += size
            files[category] = {name: round(size / mib, 3) for name, size in by_file.most_common(TRACE_TOP)}
            top[category] = [
                (name, round(size / mib, 3), blocks[name])
                for name, size in lines.most_common(TRACE_TOP)
                if size > 0
            ]
        at_base = min(samples, key=lambda s: abs(s.at - self.baseline_at))
        at_end = min(samples, key=lambda s: abs(s.at - self.end_at))
        rss_growth = at_end.rss_mib - at_base.rss_mib
        total = sum(grown.values())
        # tracemalloc slows the run several times over: per message, the growth compares with a
        # plain run's (its rate times these)
        per = max(at_end.messages - at_base.messages, 1) / 100_000
        return {
            "frames": self.frames,
            "truncated_pct": round(100 * self.truncated[0] / max(self.truncated[1], 1), 2),
            "from_s": round(self.baseline_at),
            "to_s": round(self.end_at),
            "baselines": self.baselines,
            "warm_mib": by_category(self.baseline),
            "end_mib": by_category(self.end),
            "growth_mib": grown,
            "growth_mib_per_min": {c: round(n / minutes, 3) for c, n in grown.items()},
            "total_growth_mib": round(total, 2),
            "total_mib_per_min": round(total / minutes, 3),
            "messages": at_end.messages - at_base.messages,
            "growth_mib_per_100k_messages": {c: round(n / per, 3) for c, n in grown.items()},
            "rss_growth_mib": round(rss_growth, 1),
            "rss_mib_per_min": round(rss_growth / minutes, 2),
            "tracemalloc_mib": [round(n / mib, 1) for n in self.overhead],
            "files": files,
            "top": top,
        }


# --- faults ---------------------------------------------------------------------------------------


class Chaos:
    """Puts one seeded random fault on one open connection every ``every`` seconds (jittered),
    on a thread of its own, until :meth:`stop`; :meth:`calm` then lifts what is still in force."""

    def __init__(self, sim: Any, seed: int, every: float) -> None:
        self.sim = sim
        self.every = every
        self.rng = random.Random(f"{seed}/soak-faults")
        self.applied: Counter[str] = Counter()
        self.skipped = 0  # the chosen connection closed before its fault could be put on
        self.faulted: set[int] = set()  # connection ids given a fault
        self.stalled: set[int] = set()  # connection ids given a stall: never faulted again
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-faults", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(self.sim.timeout + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.every * self.rng.uniform(0.5, 1.5)):
            try:
                self.strike()
            except Exception as exc:  # a closed connection, a busy loop: count it, go on
                self.skipped += 1
                print(f"fault skipped: {type(exc).__name__}: {exc}", file=sys.stderr)

    def strike(self) -> None:
        open_ = [c for c in self.sim.connections() if c.open and c.id not in self.stalled]
        if not open_:
            return
        connection = self.rng.choice(open_)
        kind = self.rng.choices(list(FAULT_KINDS), weights=list(FAULT_KINDS.values()))[0]
        faults = self.faults(kind)
        self.sim.set_connection_faults(connection.id, faults)
        if kind == "drop_twice":  # the reconnection is dropped too, a moment after it opens
            self.sim.fault_next(Faults(drop_at=self.rng.uniform(0.2, 2.0)))
        self.faulted.add(connection.id)
        if kind == "stall":
            self.stalled.add(connection.id)
        self.applied[f"{kind} {connection.stream.value}"] += 1

    def faults(self, kind: str) -> Faults:
        """The faults of ``kind``, timed a little after they are put on (seconds)."""
        soon = self.rng.uniform(0.0, 2.0)
        if kind in ("drop", "drop_twice"):
            return Faults(drop_at=soon)
        if kind == "stall":
            return Faults(stall_at=soon)
        if kind == "close_1011":
            return Faults(close_code=1011, close_at=soon)
        return Faults(malformed_every=self.rng.randint(3, 30))

    def calm(self) -> None:
        """No fault from now on: faults lifted from open connections, stalled ones cut at once (so
        that the client reconnects now rather than when its watchdog notices)."""
        self.sim.set_faults(Faults())
        for connection in self.sim.connections():
            if not connection.open or connection.id not in self.faulted:
                continue
            faults = Faults(drop_at=0.0) if connection.id in self.stalled else Faults()
            with contextlib.suppress(Exception):  # closed meanwhile: nothing in force any more
                self.sim.set_connection_faults(connection.id, faults)


# --- the run --------------------------------------------------------------------------------------


@dataclass
class Subscribers:
    """Everything subscribed: market-data tallies by source and role, account logs by kind."""

    market: dict[str, dict[str, Tally]] = field(default_factory=dict)
    accounts: dict[str, AccountLog] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)  # "RECONNECTING MarketDataStream" ...
    internal_errors: list[str] = field(default_factory=list)
    accounts_confirmed: int = 0  # account subscriptions the server confirmed (every stream, account)
    metrics: Any = None  # the newest client.metrics snapshot, if the client has metrics
    metrics_arrived: threading.Event = field(default_factory=threading.Event)

    def messages(self) -> Counter[str]:
        """Messages by event class, as delivered to the counting subscriber of each source."""

        def add() -> Counter[str]:  # the counters may gain a key meanwhile: _retry reads again
            total: Counter[str] = Counter()
            for roles in self.market.values():
                total.update(roles["markers"].messages)
            for log in self.accounts.values():
                total.update(log.messages)
            return total

        return _retry(add)

    def errors(self) -> list[str]:
        """The errors that ended a subscription, as ``source/role: error``."""
        market = [
            f"{name}/{role}: {error}"
            for name, roles in self.market.items()
            for role, tally in roles.items()
            for error in tally.errors
        ]
        return market + [f"{kind}: {error}" for kind, log in self.accounts.items() for error in log.errors]

    def on_metrics(self, snapshot: object) -> None:
        self.metrics = snapshot
        self.metrics_arrived.set()

    def fresh_metrics(self) -> Any:
        """A snapshot taken from now on (waits ``2 * METRICS_SECONDS`` at most), else the newest."""
        if self.metrics is not None:
            self.metrics_arrived.clear()
            self.metrics_arrived.wait(2 * METRICS_SECONDS)
        return self.metrics

    def on_status(self, status: object) -> None:
        if isinstance(status, ConnectionStatus):
            self.statuses[f"{status.state.name} {status.stream}"] += 1
        elif isinstance(status, SubscriptionStatus) and isinstance(status.target, str) and status.confirmed:
            self.accounts_confirmed += 1
        error = getattr(status, "error", None)
        if error is not None and type(error).__name__ == "InternalError":
            self.internal_errors.append(str(error)[:200])


def subscribe_all(client: Any, sim: Any, ids: list[str], accounts: tuple[str, ...]) -> Subscribers:
    """Subscribe everything the soak watches (see the module docstring); returns the subscribers."""
    md = client.market_data
    sources: dict[str, Callable[..., Any]] = {
        "trades": lambda **kw: md.trades(ids, **kw),
        "books": lambda **kw: md.order_books(ids, depth=10, **kw),
        "candles": lambda **kw: md.candles(ids, "1m", **kw),
        "last_prices": lambda **kw: md.last_prices(ids, **kw),
        "statuses": lambda **kw: md.trading_statuses(ids, **kw),
    }
    subs = Subscribers()
    client.statuses.subscribe(on_next=subs.on_status)
    for name, make in sources.items():
        roles = subs.market[name] = {"markers": Tally(), "plain": Tally(), "slow": Tally(slow=True)}
        make().with_markers().subscribe(on_next=roles["markers"].on_next, on_error=roles["markers"].on_error)
        make().subscribe(on_next=roles["plain"].on_next, on_error=roles["plain"].on_error)
        make(backlog=SLOW_BACKLOG).with_markers().subscribe(
            on_next=roles["slow"].on_next, on_error=roles["slow"].on_error
        )
    account_sources = {
        "order_states": client.orders.order_states(accounts),
        "order_trades": client.orders.order_trades(accounts),
        "positions": client.operations.positions(accounts),
        "portfolio": client.operations.portfolio(accounts),
    }
    for kind, source in account_sources.items():
        log = subs.accounts[kind] = AccountLog(kind, lambda: sim.market.now, sim.speed)
        source.with_markers().subscribe(on_next=log.on_next, on_error=log.on_error)
    watch_metrics(client, subs)
    return subs


def watch_metrics(client: Any, subs: Subscribers) -> None:
    """Keep the newest ``client.metrics`` snapshot, every ``METRICS_SECONDS``, where the client has
    metrics (a method taking the interval, or an Observable); nothing otherwise."""
    source = getattr(client, "metrics", None)
    if callable(source) and not isinstance(source, Observable):
        try:
            source = source(METRICS_SECONDS)
        except TypeError:
            source = source()
    if isinstance(source, Observable):
        source.subscribe(on_next=subs.on_metrics)


def _retry(read: Callable[[], _T], attempts: int = 50) -> _T:
    """A read of the simulator's broker from this thread: the loop thread may change a dict while
    it is read (RuntimeError); the broker is quiet when the check reads it, so a retry settles."""
    for _ in range(attempts - 1):
        try:
            return read()
        except RuntimeError:
            time.sleep(0.01)
    return read()


def broker_orders(broker: Any, account: str) -> dict[str, m.OrderState]:
    """Every order of the account, by id, in its latest state: ``broker.orders`` where the broker
    has it, else its account record (older brokers answer ``order(account, id)`` for one id only)."""
    orders = getattr(broker, "orders", None)
    states = orders(account) if callable(orders) else broker._accounts[account].states.values()
    return {state.order_id: state for state in states}


def quiesce(sim: Any, deadline: float) -> int:
    """Stop the traders and cancel the orders left active, so that the broker changes no more;
    returns how many orders are still active at ``deadline`` (0: quiet)."""
    sim.trader = False
    active: list[m.OrderState] = []
    while time.monotonic() < deadline:
        active = [o for a in sim.accounts for o in _retry(lambda a=a: sim.broker.active_orders(a))]
        if not active:
            return 0
        for order in active:
            sim.cancel_order(order.account_id, order.order_id)
        time.sleep(0.2)
    return len(active)


def settle(
    client: Any, subs: Subscribers, check: Callable[[], dict[str, list[str]]], deadline: float
) -> bool:
    """Wait until nothing is lost, or every connection is open and the account streams have been
    quiet for ``QUIET_SECONDS``, or ``deadline``; True unless the deadline came first."""
    expected = 1 + len(subs.accounts)  # one market-data connection, one per account stream
    while time.monotonic() < deadline:
        if not any(check().values()):
            return True
        newest = max(log.last_event for log in subs.accounts.values())
        quiet = time.monotonic() - newest >= QUIET_SECONDS
        if quiet and client.connections >= expected:
            return True
        time.sleep(0.5)
    return False


def lost_events(sim: Any, subs: Subscribers) -> tuple[dict[str, list[str]], list[str]]:
    """Per account kind, what the broker holds and the client never delivered (one line each); and,
    apart, the order states beyond the API's reach (see :func:`beyond_api`)."""
    broker = sim.broker
    lost: dict[str, list[str]] = {kind: [] for kind in ACCOUNT_KINDS}
    beyond: list[str] = []
    states, trades = subs.accounts["order_states"], subs.accounts["order_trades"]
    positions, portfolios = subs.accounts["positions"], subs.accounts["portfolio"]
    for account in sim.accounts:
        orders = _retry(lambda account=account: broker_orders(broker, account))
        fills = _retry(lambda account=account: broker.fills(account))
        truth = Positions.of(_retry(lambda account=account: broker.positions(account, datetime.now(UTC))))
        portfolio = _retry(lambda account=account: broker.portfolio(account, {}))
        with states.lock:
            for order_id, state in orders.items():
                any_seen, seen = states.seen_state(order_id, _final(state))
                if seen:
                    continue
                line = f"{account} order {order_id} {_final(state)}"
                if beyond_api(state, any_seen, states.gap_windows, sim.speed):
                    beyond.append(line)
                else:
                    lost["order_states"].append(line)
        with trades.lock:
            lost["order_trades"] += [
                f"{account} fill {f.trade_id} of {f.order_id}"
                for f in fills
                if f.trade_id not in trades.trade_ids
            ]
        with positions.lock:
            folded = positions.positions.get(account, Positions())
            lost["positions"] += [f"{account} {line}" for line in folded.differences(truth)]
        with portfolios.lock:
            last = portfolios.portfolios.get(account)
            mine = _portfolio_quantities(last) if last is not None else {}
            theirs = _portfolio_quantities(portfolio)
            lost["portfolio"] += [f"{account} {line}" for line in _differences("units", mine, theirs)]
    return lost, beyond


_ENDED_UNFILLED = (
    m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_CANCELLED,
    m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_REJECTED,
)


def beyond_api(
    state: m.OrderState, seen: bool, gaps: Iterable[tuple[str, datetime, datetime]], speed: float
) -> bool:
    """True for an order no recovery can deliver: never delivered in any state, ended (cancelled or
    rejected) without a fill, placed and ended inside one gap of its account's order-state stream, and
    placed on an earlier (UTC) day than the gap ended. Such an order is in no answer of the unary API
    (recovery's documented limit: GetOrders' filters see today's orders only). Gap windows are in
    the market's time (mapped when each gap arrived, see :class:`AccountLog`), as the order's are,
    give or take ``GAP_SLACK`` of wall time (times ``speed``)."""
    if seen or state.lots_executed or state.execution_report_status not in _ENDED_UNFILLED:
        return False
    if state.created_at is None or state.completion_time is None:
        return False
    placed, ended, slack = state.created_at, state.completion_time, GAP_SLACK * speed
    return any(
        target in ("", state.account_id)
        and since - slack <= placed
        and ended <= until + slack
        and placed.date() < until.date()
        for target, since, until in gaps
    )


# --- the report -----------------------------------------------------------------------------------


@dataclass
class Report:
    """The soak's findings. Times in seconds, memory in MiB, counts in messages (events)."""

    seconds: float
    seed: int
    speed: float
    instruments: int
    fault_every: float
    messages: dict[str, int]  # by event class, to the counting subscribers
    rate: float  # messages a second over the run
    faults: dict[str, int]  # "kind stream" -> how many were put on
    faults_skipped: int
    reconnects: dict[str, int]  # by stream
    gaps: dict[str, int]  # "source cause" -> gap markers, counting subscribers
    overflow: dict[str, int]  # slow subscribers: "source" -> events their overflow gaps say were dropped
    dropped: dict[str, int]  # by delivery policy
    conflated: dict[str, int]  # by delivery policy
    backlog: dict[str, int]  # events waiting at the end: accounts, market; the most ever waiting in one
    malformed: int  # frames skipped as malformed
    recovered: dict[str, int]  # by account kind: events recovered (Recovered markers)
    recovery_errors: list[str]
    account_gaps: dict[str, int]  # by account kind
    lost: dict[str, int]  # by account kind: events of the broker never delivered
    lost_examples: list[str]
    beyond_api: int  # order states in no answer of the unary API (see beyond_api): not counted as lost
    settled: bool  # the client caught up (or went quiet) within the settle time
    settle_seconds: float
    threads: dict[str, int]  # start, warm (after warm-up), end, max
    rss_mib: dict[str, float]  # start, warm, end, max
    rss_growth_pct: float  # end over warm
    decode_caches: dict[str, int]  # codec cache entries: warm, end; full_at: first full, s (-1: never)
    timeline: list[tuple[float, float, float, int]]  # (seconds, RSS MiB, in use MiB, threads), sampled
    threads_died: list[str]
    internal_errors: list[str]
    errors_logged: list[str]
    subscriber_errors: list[str]
    metrics: dict[str, Any] | None  # a client.metrics snapshot at the end, where the client has it
    failures: list[str]
    python_heap: dict[str, Any] | None = None  # --trace-memory: see HeapTrace.report
    sim_process: bool = False  # --sim-process: the RSS above is the client's process alone
    sim_rss_mib: dict[str, float] | None = None  # --sim-process: the child's start, warm, end, max, growth %
    sim_timeline: list[tuple[float, float]] = field(default_factory=list)  # (seconds, child's RSS MiB)
    warmup: dict[str, float] = field(default_factory=dict)  # see summarise_memory
    in_use_mib: dict[str, float] = field(default_factory=dict)  # the heap's live memory (Allocators)
    memory_parts: dict[str, Any] = field(default_factory=dict)  # see summarise_memory

    @property
    def ok(self) -> bool:
        return not self.failures


def _policy_counts(client: Any, metrics: Any) -> tuple[dict[str, int], dict[str, int]]:
    """Dropped and conflated events by delivery policy: from a ``client.metrics`` snapshot if there
    is one, else summed over ``client.deliveries`` (the live subscriptions)."""
    dropped, conflated = getattr(metrics, "dropped", None), getattr(metrics, "conflated", None)
    if isinstance(dropped, Mapping) and isinstance(conflated, Mapping):
        return _plain(dropped), _plain(conflated)
    dropped_by: Counter[str] = Counter()
    conflated_by: Counter[str] = Counter()
    for stats in client.deliveries:
        dropped_by[stats.policy.name] += stats.dropped
        conflated_by[stats.policy.name] += stats.conflated
    return dict(dropped_by), dict(conflated_by)


def _plain(mapping: Mapping[Any, Any]) -> dict[str, int]:
    return {getattr(k, "name", str(k)): int(v) for k, v in mapping.items()}


def _metrics_dict(snapshot: Any) -> dict[str, Any] | None:
    """A ``client.metrics`` snapshot as plain JSON values, with its one-line summary."""
    if snapshot is None:
        return None
    fields = attrs.asdict(snapshot) if attrs.has(type(snapshot)) else {}
    return json.loads(json.dumps({"summary": str(snapshot), **fields}, default=str))


def summarise(
    samples: list[Sample], warm: float
) -> tuple[dict[str, int], dict[str, float], float, dict[str, int]]:
    """Threads and RSS at the start, after warm-up, at the end and at most; RSS growth end/warm, %;
    decode cache entries after warm-up and at the end.

    Warm-up lasts ``warm`` seconds and until every one of the codec's value caches was full once
    (at its bound, or its first eviction: the issue's goal is "growth under 5 % once caches are
    full"); a run too short for that measures from ``warm`` and says so (``caches["full_at"]`` is
    -1). The end is the
    median of the last three samples, so that one garbage-collection moment does not decide it."""
    warm_sample, _ = warm_sample_of(samples, warm)
    tail = samples[-3:]
    end_rss = statistics.median(s.rss_mib for s in tail)
    threads = {
        "start": samples[0].threads,
        "warm": warm_sample.threads,
        "end": samples[-1].threads,
        "max": max(s.threads for s in samples),
    }
    rss = {
        "start": round(samples[0].rss_mib, 1),
        "warm": round(warm_sample.rss_mib, 1),
        "end": round(end_rss, 1),
        "max": round(max(s.rss_mib for s in samples), 1),
    }
    growth = (end_rss - warm_sample.rss_mib) / warm_sample.rss_mib * 100 if warm_sample.rss_mib else 0.0
    full_at = caches_full_at(samples)
    caches = {
        "warm": sum(warm_sample.caches),
        "end": sum(samples[-1].caches),
        "full_at": -1 if full_at is None else round(full_at),
    }
    return threads, rss, round(growth, 2), caches


def warm_sample_of(samples: list[Sample], warm: float) -> tuple[Sample, float | None]:
    """The first sample after warm-up, and when the caches were full (None: not all in the run).

    Warm-up, the definition every growth figure uses: the first ``warm`` seconds of the run under
    faults (``WARMUP_SECONDS``, or a quarter of a shorter run), extended until every one of the
    codec's value caches had been full once (:func:`caches_full_at`) and every recovery memory that
    matters had reached its bound (:func:`recovery_full_at`). Growth is measured from the first
    sample at or after that moment to the end (the median of the last three samples). A run too short
    for the caches to fill measures from what it has, and the report says so."""
    codec, recovery = caches_full_at(samples), recovery_full_at(samples)
    full_at = None if codec is None or recovery is None else max(codec, recovery)
    warm = max([warm] + [at for at in (codec, recovery) if at is not None])
    return ([s for s in samples if s.at >= warm] or samples[-1:])[0], full_at


def recovery_full_at(samples: list[Sample]) -> float | None:
    """When every recovery memory that matters had reached its bound, seconds (0.0: none matters);
    None if one never did. One that holds fewer than ``RECOVERY_SMALL`` entries (or half its bound,
    if that is fewer) at the end weighs little and is left out (the lot sizes of a few instruments,
    the orders active at once, ...); one that holds more and is not full is still filling."""
    last = samples[-1]
    bound = last.recovery_bound
    keys = [key for key, n in last.recovery.items() if n >= min(bound // 2, RECOVERY_SMALL)]
    times = [next((s.at for s in samples if key in s.recovery_full), None) for key in keys]
    if any(at is None for at in times):
        return None
    return max((at for at in times if at is not None), default=0.0)


def summarise_memory(
    samples: list[Sample], warm: float
) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """Warm-up (seconds: its minimum, when the caches were full, where growth is measured from);
    the heap's live memory (glibc's and pymalloc's in use) at the start, after warm-up, at the end
    and at most, with its growth end/warm, %; and its parts after warm-up and at the end: glibc's in
    use and held, pymalloc's, the soak's own records, the recovery memories' entries (of their
    bound), and the RSS growth less the records' growth, % (what the client's RSS did)."""
    warm_sample, full_at = warm_sample_of(samples, warm)
    tail = samples[-3:]

    def end(read: Callable[[Sample], float]) -> float:
        return statistics.median(read(s) for s in tail)

    def growth(read: Callable[[Sample], float]) -> float:
        base = read(warm_sample)
        return round((end(read) - base) / base * 100, 2) if base else 0.0

    codec, recovery = caches_full_at(samples), recovery_full_at(samples)
    warmup: dict[str, float] = {
        "min_s": round(warm),
        "codec_caches_full_s": -1 if codec is None else round(codec),
        "recovery_memories_full_s": -1 if recovery is None else round(recovery),
        "caches_full_s": -1 if full_at is None else round(full_at),
    }
    warmup["from_s"] = round(warm_sample.at)
    in_use = {
        "start": round(samples[0].in_use_mib, 1),
        "warm": round(warm_sample.in_use_mib, 1),
        "end": round(end(lambda s: s.in_use_mib), 1),
        "max": round(max(s.in_use_mib for s in samples), 1),
        "growth_pct": growth(lambda s: s.in_use_mib),
    }
    records = end(lambda s: s.records_mib) - warm_sample.records_mib
    rss_less = end(lambda s: s.rss_mib) - warm_sample.rss_mib - records
    parts: dict[str, Any] = {
        "glibc_in_use": [round(warm_sample.glibc_mib, 1), round(end(lambda s: s.glibc_mib), 1)],
        "glibc_held": [round(warm_sample.glibc_held_mib, 1), round(end(lambda s: s.glibc_held_mib), 1)],
        "pymalloc": [round(warm_sample.pymalloc_mib, 1), round(end(lambda s: s.pymalloc_mib), 1)],
        "pymalloc_held": [
            round(warm_sample.pymalloc_held_mib, 1),
            round(end(lambda s: s.pymalloc_held_mib), 1),
        ],
        "soak_records": [round(warm_sample.records_mib, 2), round(end(lambda s: s.records_mib), 2)],
        "recovery_entries": [
            warm_sample.recovery_total,
            samples[-1].recovery_total,
            samples[-1].recovery_bound * len(samples[-1].recovery),
        ],
        "rss_growth_less_records_pct": round(rss_less / warm_sample.rss_mib * 100, 2)
        if warm_sample.rss_mib
        else 0.0,
    }
    return warmup, in_use, parts


def summarise_sim(samples: list[Sample], warm: float) -> dict[str, float]:
    """``--sim-process``: the child's RSS at the start, from the same warm sample as the client's,
    at the end (median of the last three) and at most, and its growth end/warm, %."""
    warm_sample, _ = warm_sample_of(samples, warm)
    end = statistics.median(s.sim_rss_mib for s in samples[-3:])
    growth = (
        (end - warm_sample.sim_rss_mib) / warm_sample.sim_rss_mib * 100 if warm_sample.sim_rss_mib else 0.0
    )
    return {
        "start": round(samples[0].sim_rss_mib, 1),
        "warm": round(warm_sample.sim_rss_mib, 1),
        "end": round(end, 1),
        "max": round(max(s.sim_rss_mib for s in samples), 1),
        "growth_pct": round(growth, 2),
    }


def caches_full_at(samples: list[Sample]) -> float | None:
    """When every one of the codec's value caches had been full once, seconds: the first sample
    that saw it at its bound or smaller than the sample before (it forgot entries, which it does
    only when full); None if one that matters never was (see :func:`summarise`)."""
    from rxinvest.wire.codec import CACHE_LIMIT

    cleared = [
        next(
            (
                b.at
                for a, b in itertools.pairwise(samples)
                if len(b.caches) > i and (b.caches[i] < a.caches[i] or b.caches[i] >= CACHE_LIMIT)
            ),
            None,
        )
        for i in range(len(samples[-1].caches))
    ]
    # A cache that never filled and holds under half its bound at the end weighs little: it does not
    # hold up the end of warm-up (the money cache of a few accounts' events is one such).
    small = [i for i, n in enumerate(samples[-1].caches) if cleared[i] is None and n < CACHE_LIMIT // 2]
    pending = [i for i, at in enumerate(cleared) if at is None and i not in small]
    done = [at for at in cleared if at is not None]
    return max(done) if done and not pending else None


def thin(samples: list[Sample]) -> list[Sample]:
    """At most ``TIMELINE_POINTS`` samples, evenly spread, the first and the last included."""
    step = max(1, -(-(len(samples) - 1) // (TIMELINE_POINTS - 1)))
    return samples[:-1:step] + samples[-1:]


def print_report(report: Report, out: TextIO) -> None:
    def line(label: str, value: object) -> None:
        print(f"{label:<22} {value}", file=out)

    def counts(mapping: Mapping[str, object]) -> str:
        return (
            ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in mapping.items()) or "-"
        )

    print(
        f"\nsoak: {report.seconds:.0f} s, seed {report.seed}, speed {report.speed:g}x, "
        f"{report.instruments} instruments, a fault every ~{report.fault_every:g} s",
        file=out,
    )
    line("messages", f"{sum(report.messages.values()):,} ({report.rate:,.0f}/s): {counts(report.messages)}")
    line("faults", f"{counts(report.faults)}; skipped {report.faults_skipped}")
    line("reconnects", counts(report.reconnects))
    line("gaps (markers)", counts(report.gaps))
    line("account gaps", counts(report.account_gaps))
    line("slow overflow", counts(report.overflow))
    line("dropped by policy", counts(report.dropped))
    line("conflated by policy", counts(report.conflated))
    line("backlog", counts(report.backlog))
    line("malformed skipped", report.malformed)
    line(
        "recovered",
        counts(report.recovered)
        + (f"; errors {report.recovery_errors[:3]}" if report.recovery_errors else ""),
    )
    line("lost", counts(report.lost))
    for example in report.lost_examples:
        print(f"  {example}", file=out)
    line("beyond the API", f"{report.beyond_api} orders placed before midnight, cancelled unfilled in a gap")
    line("settled", f"{report.settled} in {report.settle_seconds:.1f} s")
    line("threads", counts(report.threads))
    warmup = report.warmup

    def when(key: str) -> str:
        at = warmup.get(key, -1)
        return f"{at:g} s" if at >= 0 else "NOT full in the run"

    line(
        "warm-up",
        f"the first {warmup.get('min_s', 0):g} s, and until the codec caches were full "
        f"({when('codec_caches_full_s')}) and the recovery memories that matter too "
        f"({when('recovery_memories_full_s')}): growth is from the sample at "
        f"{warmup.get('from_s', 0):g} s to the end",
    )
    line("RSS MiB" + (" (client)" if report.sim_process else ""), counts(report.rss_mib))
    line("in use MiB", counts(report.in_use_mib) + " (glibc + pymalloc live memory)")
    points = report.timeline[:: max(1, len(report.timeline) // 10)]
    line(
        "RSS / in use over time", ", ".join(f"{at:.0f} s {rss:.1f}/{used:.1f}" for at, rss, used, _ in points)
    )
    line("threads over time", ", ".join(f"{at:.0f} s {threads}" for at, _, _, threads in points))
    parts = report.memory_parts
    if parts:
        line(
            "  warm -> end MiB",
            f"glibc in use {parts['glibc_in_use']}, glibc held {parts['glibc_held']}, pymalloc in use "
            f"{parts['pymalloc']}, pymalloc held {parts['pymalloc_held']}, soak records "
            f"{parts['soak_records']}; recovery memories "
            f"{parts['recovery_entries'][0]:,} -> {parts['recovery_entries'][1]:,} entries "
            f"(of {parts['recovery_entries'][2]:,})",
        )
    verdict = "reached" if report.rss_growth_pct < 5 else "NOT reached"
    line("RSS growth", f"{report.rss_growth_pct:+.2f} % after warm-up: goal under 5 % {verdict}")
    if parts:
        line(
            "  less soak records",
            f"{parts['rss_growth_less_records_pct']:+.2f} %; "
            f"in use {report.in_use_mib.get('growth_pct', 0):+.2f} %",
        )
    if report.sim_rss_mib is not None:
        line("simulator RSS MiB", f"{counts(report.sim_rss_mib)} (child process, not the client's)")
        sim_points = report.sim_timeline[:: max(1, len(report.sim_timeline) // 8)]
        line("  over time", ", ".join(f"{at:.0f} s {rss:.0f}" for at, rss in sim_points))
    line("decode cache entries", counts(report.decode_caches))
    line("threads died", report.threads_died or "none")
    line("internal errors", report.internal_errors or "none")
    line("errors logged", report.errors_logged or "none")
    if report.subscriber_errors:
        line("subscriber errors", report.subscriber_errors)
    if report.metrics is not None:
        line("client.metrics", report.metrics["summary"])
    if report.python_heap is not None:
        print_heap(report.python_heap, line, out)
    print(f"result: {'OK' if report.ok else 'FAIL: ' + '; '.join(report.failures)}", file=out)


def print_heap(heap: Mapping[str, Any], line: Callable[[str, object], None], out: TextIO) -> None:
    """The ``--trace-memory`` lines of the report."""
    grown, rate = heap["growth_mib"], heap["growth_mib_per_min"]
    line(
        "Python heap growth",
        f"{heap['total_growth_mib']:+.2f} MiB ({heap['total_mib_per_min']:+.3f} MiB/min) from "
        f"{heap['from_s']} s to {heap['to_s']} s; RSS meanwhile {heap['rss_growth_mib']:+.1f} MiB "
        f"({heap['rss_mib_per_min']:+.2f} MiB/min, traced run)",
    )
    line("  by category", ", ".join(f"{c} {grown[c]:+.2f} MiB ({rate[c]:+.3f}/min)" for c in grown))
    per = heap["growth_mib_per_100k_messages"]
    line(
        "  per 100k messages",
        f"{heap['messages']:,} messages meanwhile (tracing slows the run): "
        + ", ".join(f"{c} {per[c]:+.3f} MiB" for c in per),
    )
    line("  heap MiB", f"warm {heap['warm_mib']}, end {heap['end_mib']}")
    line(
        "  tracemalloc",
        f"{heap['frames']} frames ({heap['truncated_pct']} % of blocks cut), own memory MiB "
        f"{heap['tracemalloc_mib']}, baseline taken {heap['baselines']} time(s)",
    )
    for category, files in heap["files"].items():
        line(f"  {category} files", ", ".join(f"{name} {mib:+.3f}" for name, mib in files.items()) or "-")
    for category, lines in heap["top"].items():
        for name, mib, blocks in lines:
            print(f"    {category:<10} {mib:+8.3f} MiB {blocks:+9,} blocks  {name}", file=out)


# --- main -----------------------------------------------------------------------------------------


class Soak:
    """One soak run: the client on its embedded simulator (or, with ``--sim-process``, on the
    simulator of a child process), the subscribers, the faults, the samples."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args, self.out = args, out
        self.duration = args.minutes * 60  # seconds under faults
        self.warm = min(WARMUP_SECONDS, self.duration / 4)  # seconds of warm-up
        self.samples: list[Sample] = []
        self.allocators = Allocators()
        self.names_warm: set[str] = set()  # rxinvest's threads after warm-up
        self.heap = HeapTrace(args.trace_memory) if args.trace_memory else None  # before the client
        options = {"seed": args.seed, "speed": args.speed, "trader": False}  # on once subscribed
        self._stack = contextlib.ExitStack()  # closed last in, first out: client, then simulator
        try:
            self.remote: RemoteSim | None = None
            if args.sim_process:
                pin_mmap_threshold()  # RSS as live memory: see pin_mmap_threshold
                self.remote = self._stack.enter_context(sim_process(options, args.cache_limit))
                self.sim: Any = self.remote
                self.client = rxinvest.connect(
                    self.remote.token,
                    target=self.remote.base_url,
                    rest_url=self.remote.rest_url,
                    ping_delay=PING_DELAY,
                )
                self._stack.callback(self.client.close)
            else:
                self.client = rxinvest.connect(target="sim", ping_delay=PING_DELAY, sim_options=options)
                self._stack.callback(self.client.close)  # stops the embedded simulator too
                self.sim = self.client.sim
            count = max(1, min(args.instruments, len(self.sim.instruments)))
            self.ids = [f"{i.ticker}_{i.class_code}" for i in self.sim.instruments[:count]]
            self.subs = Subscribers()
            self.chaos = Chaos(self.sim, args.seed, args.fault_every)
            self._stack.callback(self.chaos.stop)
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        """Faults stopped, then the client closed, then the simulator stopped (and its child ended)."""
        self._stack.close()

    def sim_rss(self) -> float:
        return self.remote.rss_mib() if self.remote is not None else 0.0

    def sample(self, started: float) -> Sample:
        return self.keep(self.measure(time.monotonic() - started, sum(self.subs.messages().values())))

    def keep(self, sample: Sample) -> Sample:
        """Append ``sample``; the one before it drops its recovery entries by memory (what
        :func:`recovery_full_at` reads of it, its full memories, is kept, shared when unchanged)."""
        if self.samples:
            last = self.samples[-1]
            if sample.recovery_full == last.recovery_full:
                sample.recovery_full = last.recovery_full
            last.recovery = _NO_ENTRIES
        self.samples.append(sample)
        return sample

    def measure(self, at: float, messages: int) -> Sample:
        """One sample now: RSS, the allocators, threads, caches, the soak's own records."""
        glibc = self.allocators.glibc_mib() or (0.0, 0.0)
        pymalloc = self.allocators.pymalloc_mib() or (0.0, 0.0)
        records = sum(log.records_bytes() for log in self.subs.accounts.values()) / (1 << 20)
        recovery, bound = recovery_entries(self.client)
        return Sample(
            at,
            rss_mib(),
            threading.active_count(),
            messages,
            decode_cache_entries(),
            self.sim_rss(),
            glibc_mib=glibc[0],
            glibc_held_mib=glibc[1],
            pymalloc_mib=pymalloc[0],
            pymalloc_held_mib=pymalloc[1],
            records_mib=records,
            recovery=recovery,
            recovery_bound=bound,
            recovery_total=sum(recovery.values()),
            recovery_full=frozenset(key for key, n in recovery.items() if bound and n >= bound),
        )

    def under_faults(self) -> float:
        """Subscribe, start the traders once every account stream is live (so that the broker's
        every event is one the client could see), then run with faults for the duration; returns
        the seconds it ran."""
        self.subs = subscribe_all(self.client, self.sim, self.ids, self.sim.accounts)
        expected = len(self.subs.accounts) * len(self.sim.accounts)
        deadline = time.monotonic() + LIVE_SECONDS
        while self.subs.accounts_confirmed < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        self.sim.trader = True
        started = time.monotonic()
        self.chaos.start()
        next_progress = started + PROGRESS_SECONDS
        while True:
            sample = self.sample(started)
            if not self.names_warm and sample.at >= self.warm:
                self.names_warm = rxinvest_threads()
            if self.heap is not None:
                self.heap.look(sample, self.warm, self.duration)
            if time.monotonic() >= next_progress:
                progress(sample, self.subs, self.chaos, self.out)
                next_progress += PROGRESS_SECONDS
            if sample.at >= self.duration:
                if self.heap is not None:
                    self.heap.finish(sample.at)
                return sample.at
            time.sleep(min(SAMPLE_SECONDS, self.duration - sample.at))

    def wind_down(self) -> tuple[bool, float]:
        """Faults off, broker quiet, client caught up (bounded); returns (settled, seconds it took)."""
        self.chaos.stop()
        self.chaos.calm()
        started = time.monotonic()
        deadline = started + SETTLE_SECONDS
        still_active = quiesce(self.sim, deadline)
        settled = settle(self.client, self.subs, lambda: lost_events(self.sim, self.subs)[0], deadline)
        return settled and not still_active, time.monotonic() - started

    def report(
        self, seconds: float, settled: bool, settle_seconds: float, logs: LogCount, deaths: list[str]
    ) -> Report:
        """The findings, read while the client is still open (its deliveries are live)."""
        subs, chaos = self.subs, self.chaos
        lost, beyond = lost_events(self.sim, subs)
        messages_at_end = self.samples[-1].messages
        self.keep(self.measure(self.samples[-1].at + settle_seconds, messages_at_end))
        threads, rss, growth, caches = summarise(self.samples, self.warm)
        warmup, in_use, parts = summarise_memory(self.samples, self.warm)
        sim_rss = summarise_sim(self.samples, self.warm) if self.remote is not None else None
        died = deaths + [f"{name}: gone" for name in sorted(self.names_warm - rxinvest_threads())]
        metrics = subs.fresh_metrics()
        dropped, conflated = _policy_counts(self.client, metrics)
        malformed = getattr(metrics, "malformed", None)
        failures = [f"{sum(map(len, lost.values()))} events lost"] if any(lost.values()) else []
        failures += [f"{len(died)} thread(s) died"] if died else []
        failures += [f"{len(subs.internal_errors)} internal error(s)"] if subs.internal_errors else []
        failures += [f"{len(subs.errors())} subscription(s) failed"] if subs.errors() else []
        return Report(
            seconds=round(seconds, 1),
            seed=self.args.seed,
            speed=self.args.speed,
            instruments=len(self.ids),
            fault_every=self.args.fault_every,
            messages=dict(subs.messages().most_common()),
            rate=round(messages_at_end / seconds, 1) if seconds >= 1 else 0.0,
            faults=dict(sorted(chaos.applied.items())),
            faults_skipped=chaos.skipped,
            reconnects={
                key.split(" ", 1)[1]: n
                for key, n in sorted(subs.statuses.items())
                if key.startswith("RECONNECTING")
            },
            gaps={
                f"{name} {cause}": n
                for name, roles in subs.market.items()
                for cause, n in sorted(roles["markers"].gaps.items())
            },
            overflow={name: roles["slow"].gap_dropped for name, roles in subs.market.items()},
            dropped=dropped,
            conflated=conflated,
            backlog=_backlog(self.client),
            malformed=malformed if isinstance(malformed, int) else logs.malformed,
            recovered={kind: log.recovered for kind, log in subs.accounts.items()},
            recovery_errors=[error for log in subs.accounts.values() for error in log.recovery_errors],
            account_gaps={kind: log.gaps for kind, log in subs.accounts.items()},
            lost={kind: len(lines) for kind, lines in lost.items()},
            lost_examples=[line for lines in lost.values() for line in lines[:3]],
            beyond_api=len(beyond),
            settled=settled,
            settle_seconds=round(settle_seconds, 1),
            threads=threads,
            rss_mib=rss,
            rss_growth_pct=growth,
            decode_caches=caches,
            timeline=[
                (round(s.at), round(s.rss_mib, 1), round(s.in_use_mib, 1), s.threads)
                for s in thin(self.samples)
            ],
            warmup=warmup,
            in_use_mib=in_use,
            memory_parts=parts,
            threads_died=died,
            internal_errors=subs.internal_errors[:5],
            errors_logged=logs.errors,
            subscriber_errors=subs.errors()[:10],
            metrics=_metrics_dict(metrics),
            failures=failures,
            python_heap=self.heap.report(self.samples) if self.heap is not None else None,
            sim_process=self.remote is not None,
            sim_rss_mib=sim_rss,
            sim_timeline=[(round(s.at), round(s.sim_rss_mib, 1)) for s in thin(self.samples)]
            if self.remote is not None
            else [],
        )


def _backlog(client: Any) -> dict[str, int]:
    """Events waiting now in the account subscriptions and the market-data ones, and the most that
    ever waited in one subscription."""
    stats = client.deliveries
    accounts = sum(s.backlog for s in stats if "Stream of " in s.name)  # "OrderStateStream of ..."
    return {
        "accounts": accounts,
        "market": sum(s.backlog for s in stats) - accounts,
        "max": max((s.max_backlog for s in stats), default=0),
    }


def progress(sample: Sample, subs: Subscribers, chaos: Chaos, out: TextIO) -> None:
    """One line: the client is alive, and how it fares."""
    reconnects = sum(n for key, n in subs.statuses.items() if key.startswith("RECONNECTING"))
    gaps = sum(sum(roles["markers"].gaps.values()) for roles in subs.market.values())
    gaps += sum(log.gaps for log in subs.accounts.values())
    print(
        f"[{sample.at:6.0f} s] messages {sample.messages:,}, faults {sum(chaos.applied.values())}, "
        f"reconnects {reconnects}, gaps {gaps}, threads {sample.threads}, RSS {sample.rss_mib:.1f} MiB"
        f" (in use {sample.in_use_mib:.1f}, soak records {sample.records_mib:.1f})"
        + (f" (simulator's process {sample.sim_rss_mib:.1f})" if sample.sim_rss_mib else "")
        + f", decode caches {' + '.join(f'{n:,}' for n in sample.caches)}",
        file=out,
        flush=True,
    )


def run(args: argparse.Namespace, out: TextIO) -> Report:
    """A soak run from start to report; the client and the simulator are closed whatever happens."""
    logs = LogCount()
    logging.getLogger("rxinvest").addHandler(logs)
    try:
        with ThreadWatch() as watch:
            soak = Soak(args, out)
            try:
                seconds = soak.under_faults()
                settled, settle_seconds = soak.wind_down()
                return soak.report(seconds, settled, settle_seconds, logs, watch.deaths)
            finally:
                soak.close()
    finally:
        logging.getLogger("rxinvest").removeHandler(logs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run under faults")
    parser.add_argument("--seed", type=int, default=1, help="of the market, the traders and the faults")
    parser.add_argument("--speed", type=float, default=5.0, help="simulated seconds per real second")
    parser.add_argument("--instruments", type=int, default=12, help="market-data instruments (of 14)")
    parser.add_argument("--fault-every", type=float, default=10.0, help="mean seconds between faults")
    parser.add_argument("--json", action="store_true", help="print the final report as JSON")
    parser.add_argument(
        "--cache-limit",
        type=int,
        default=None,
        help="bound the codec's value caches lower (default: the codec's 65,536 entries each, which "
        "take minutes to fill): the caches are then full within seconds, and the RSS growth after "
        "warm-up is that of everything else",
    )
    parser.add_argument(
        "--recovery-limit",
        type=int,
        default=None,
        help="bound each of the account streams' recovery memories to this many entries (default: the "
        "library's 10,000, which a 10-minute run does not fill); with a few hundred, they are full "
        "within minutes, and the growth after warm-up is that of everything else (recoveries then "
        "deliver again the orders they forgot: many more recovered events, duplicates, not losses)",
    )
    parser.add_argument(
        "--trace-memory",
        type=int,
        nargs="?",
        const=TRACE_FRAMES,
        default=0,
        metavar="FRAMES",
        help="trace Python allocations (tracemalloc, FRAMES deep, default %(const)s; slows the run) and "
        "report the heap's growth after warm-up by simulator, soak, client and other code",
    )
    parser.add_argument(
        "--sim-process",
        action="store_true",
        help="run the simulator in a child process (multiprocessing manager), so that the RSS "
        "measured is the client's process alone; the child's RSS is reported apart",
    )
    args = parser.parse_args()
    if args.cache_limit is not None:
        from rxinvest.wire import codec

        codec.CACHE_LIMIT = args.cache_limit  # type: ignore[misc]  # read at each store: takes effect now
    if args.recovery_limit is not None:
        bound_recovery_memories(args.recovery_limit)  # before the client makes its connections
    out = sys.stderr if args.json else sys.stdout  # progress lines: stdout stays JSON with --json
    report = run(args, out)
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2, default=str))
    else:
        print_report(report, out)
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
