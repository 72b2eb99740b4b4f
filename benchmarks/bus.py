"""The bus: what a NATS gateway costs its consumers against a direct client, in events a second and latency.

Run: ``.venv/bin/python benchmarks/bus.py [--seconds 10] [--consumers 4] [--rate 2000] [--rounds 2]``;
``--profile DIR`` also runs one bus round with the gateway and one consumer under cProfile (every
thread) and writes their top functions to ``DIR``. Everything runs on this machine: a ``nats-server``
(:class:`rxinvest.bus.natsd.NatsServer`), a simulator, the gateway and every reader, each in its own
process (started by this script, with ``--role``), so that none shares a GIL with another.

Fan-out (events a second per reader): the simulator runs in burst mode without a rate
(``--fault burst=yes``): each MarketDataStream connection that subscribes gets pre-built frames of
what it subscribed, round and round, as fast as its socket takes them, for as long as it is open.
That is the highest steady rate the simulator makes, and it is closed-loop: it is paced by the
reader, so what a reader counts is its capacity. Every reader subscribes the same data: trades and
depth-20 books (without conflation, so that every book counts) of four instruments (``IDS``).
Three set-ups, in one round, in turn (the order alternates between rounds):

* direct x1: one ``rxinvest.connect()`` client alone with the simulator (the best case);
* bus: a gateway (``rxinvest.bus.Gateway`` over a direct client) and ``--consumers`` processes of
  ``rxinvest.bus.connect()``; the gateway's read rate is the burst's;
* direct xN: ``--consumers`` direct clients at once, each on its own connection: the same load as
  the bus (N subscribers of the same data on this machine), without it.

Every reader counts what its ``on_next`` gets over one window of ``--seconds``, the same wall-clock
window for all processes of a set-up, after a warm-up. Reported: medians over rounds of the
per-reader rate (for the bus, the median consumer, and the gateway's published rate), and the
ratios. The verdict's ratio is bus per consumer / direct xN per client (same machine, same load;
goal >= 0.5); bus / direct x1 is shown beside it. Losses are counted (gaps seen by a reader, events
dropped from a backlog, and what the consumers got against what the gateway published).

Added latency: the simulator sends ``--rate`` trades a second (``burst_rate``), each stamped with
the real time of its sending. The gateway's process also subscribes the same trades on the same
direct client that the gateway holds (one upstream subscription, two subscribers), and records when
each one reaches its ``on_next``: the direct receive time. Each consumer records when each one
reaches its own ``on_next``. Events are paired by (instrument, stamped time, price, quantity), and
the added latency of one event at one consumer is consumer receive - direct receive, both read from
the one wall clock of this machine (``time.time()``). Reported: p50/p99/p99.9/max over all
consumers' events of the window (goal: p99 under 2 ms), and beside it the end-to-end latency
(receive - the simulator's stamp) of the direct subscriber and of the consumers.

The latency run is made twice: with the consumers' default delivery (each event handed from the
NATS thread to the client's delivery threads, so that a slow subscriber never holds NATS up), and
with ``scheduler=ImmediateScheduler()`` (subscribers run on the NATS thread itself: one thread
hand-over less, and a subscriber slower than the flow makes NATS drop messages, shown as gaps).
The direct subscriber keeps its default delivery in both.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bursts import IDS
from reactivex.scheduler import ImmediateScheduler

from rxinvest.derived import Gap, Marker

HERE = Path(__file__).resolve()
WARMUP = 3.0  # seconds every reader reads before the window opens
START_TIMEOUT = 40.0  # seconds a process may take to be ready
DEPTH = 20
INLINE = "latency_inline"  # the latency run with consumers delivering on their NATS thread


# --- the worker processes ----------------------------------------------------------------------------


def _emit(**values: Any) -> None:
    print(json.dumps(values), flush=True)


def _watchdog(seconds: float) -> None:
    """A worker never outlives this: whatever happens, it exits after ``seconds``."""
    timer = threading.Timer(seconds, lambda: os._exit(3))
    timer.daemon = True
    timer.start()


class _ThreadProfiles:
    """cProfile in every thread started from now on (and this one); merged on :meth:`dump`."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._start_here()
        threading.setprofile(self._hook)

    def _start_here(self) -> None:
        profile = cProfile.Profile()
        with self._lock:
            self.profiles.append(profile)
        profile.enable()

    def _hook(self, *_: Any) -> None:
        sys.setprofile(None)
        self._start_here()

    def dump(self, path: str, title: str) -> None:
        threading.setprofile(None)
        stats: pstats.Stats | None = None
        with self._lock:
            profiles = list(self.profiles)
        for profile in profiles:
            profile.create_stats()
            if not getattr(profile, "stats", None):
                continue
            if stats is None:
                stats = pstats.Stats(profile)
            else:
                stats.add(profile)
        if stats is None:
            return
        stats.dump_stats(path + ".prof")
        out = io.StringIO()
        out.write(f"{title}: {len(profiles)} threads\n")
        for key in ("tottime", "cumulative"):
            stats.stream = out  # type: ignore[attr-defined]
            stats.sort_stats(key).print_stats(45)
        Path(path + ".txt").write_text(out.getvalue())


def _wait_start() -> tuple[float, float]:
    """The window's start (wall clock), read from stdin; returns (start, end)."""
    line = sys.stdin.readline()
    start, seconds = (float(x) for x in line.split())
    return start, start + seconds


def _sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.2))


def _trade_key(trade: Any) -> str:
    return f"{trade.instrument_uid}|{trade.time.isoformat()}|{trade.price}|{trade.quantity}"


class _Reader:
    """What a reader's subscriber counts, or records (latency)."""

    def __init__(self, record: bool) -> None:
        self.count = 0
        self.gaps = 0
        self.first = threading.Event()
        self.record = record
        # (receive, key, stamped) in three lists of floats and strings: objects the garbage
        # collector does not track, so that recording adds no full collections of its own to
        # what is measured (a tuple a sample did: pauses of tens of ms in every reader)
        self.received: list[float] = []
        self.keys: list[str] = []
        self.stamped: list[float] = []

    def on_next(self, item: Any) -> None:
        now = time.time()
        if not isinstance(item, Marker):
            self.count += 1
            self.first.set()
            if self.record:
                self.received.append(now)
                self.keys.append(_trade_key(item))
                self.stamped.append(item.time.timestamp())
        elif isinstance(item, Gap):
            self.gaps += 1

    def subscribe(self, client: Any, latency: bool) -> None:
        md = client.market_data
        md.trades(IDS).with_markers().subscribe(self.on_next)
        if not latency:
            md.order_books(IDS, depth=DEPTH, conflate=False).with_markers().subscribe(self.on_next)


def _dropped(client: Any) -> int:
    return sum(stat.dropped for stat in client.deliveries)


def _window(reader: _Reader, client: Any, extra: Callable[[], int] | None = None) -> dict[str, Any]:
    start, end = _wait_start()
    _sleep_until(start)
    count0, gaps0, drop0 = reader.count, reader.gaps, _dropped(client)
    extra0 = extra() if extra else 0
    _sleep_until(end)
    seconds = end - start
    return {
        "rate": (reader.count - count0) / seconds,
        "gaps": reader.gaps - gaps0,
        "dropped": _dropped(client) - drop0,
        "extra_rate": ((extra() if extra else 0) - extra0) / seconds,
        "start": start,
        "end": end,
    }


def _samples_out(path: str, reader: _Reader, lo: float, hi: float) -> None:
    samples = zip(reader.received, reader.keys, reader.stamped, strict=True)
    with open(path, "w") as out:
        json.dump([s for s in samples if lo <= s[0] <= hi], out)


def worker(args: argparse.Namespace) -> None:
    import rxinvest
    import rxinvest.bus
    from rxinvest.bus import Gateway, Retention

    _watchdog(args.lifetime)
    profiles = _ThreadProfiles() if args.profile_to else None
    latency = args.mode.startswith("latency")
    prefix, stream = f"bench{args.ns}", f"BENCH{args.ns}"
    reader = _Reader(record=latency)
    if args.role == "gateway":
        client = rxinvest.connect(args.token, target=args.sim)
        gateway = Gateway(
            client,
            args.nats,
            name=f"bench{args.ns}",
            prefix=prefix,
            stream=stream,
            retention=Retention(max_age=120.0, max_bytes=256 << 20),
        )
        gateway.start()
        if not gateway.wait_active(15):
            raise SystemExit("the gateway did not become active")
        _emit(ready=True)
        if latency:
            # The direct subscriber beside the gateway, on the client it holds: subscribed once the
            # consumers' demand is confirmed (a topic the client already holds is never confirmed
            # to the gateway: see the report), so that both share one upstream subscription.
            sys.stdin.readline()
            reader.subscribe(client, latency)
            if not reader.first.wait(30):
                raise SystemExit("gateway: the direct subscriber got no event within 30 s")
            _emit(ready=True)
        result = _window(reader, client, lambda: gateway.published)
        if latency:
            _samples_out(args.out, reader, result["start"] - 2, result["end"] + 2)
        if profiles:
            profiles.dump(args.profile_to, "gateway")
        _emit(**result)
        sys.stdin.readline()  # serves until told (or its stdin closes)
        gateway.close()
        return
    if args.role == "consumer":
        options: dict[str, Any] = {}
        if args.mode == INLINE:  # delivered on the consumer's NATS thread: no hand-over to a pool
            options["scheduler"] = ImmediateScheduler()
        client = rxinvest.bus.connect(args.nats, prefix=prefix, stream=stream, open_timeout=20, **options)
    else:
        client = rxinvest.connect(args.token, target=args.sim)
    with client:
        reader.subscribe(client, latency)
        if not reader.first.wait(30):
            raise SystemExit(f"{args.role}: no event within 30 s")
        _emit(ready=True)
        result = _window(reader, client)
        if latency:
            _samples_out(args.out, reader, result["start"], result["end"])
        if profiles:
            profiles.dump(args.profile_to, args.role)
        _emit(**result)


# --- the orchestrator ----------------------------------------------------------------------------------


class Procs:
    """Child processes, each in its own process group; all killed on :meth:`close`."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, command: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
            **kwargs,
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                if proc.stdin:
                    proc.stdin.close()
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, 2.0)


def read_json(proc: subprocess.Popen[str], deadline: float, what: str) -> dict[str, Any]:
    """The next JSON line of ``proc``'s stdout, by ``deadline`` (monotonic)."""
    assert proc.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"{what}: no answer in time")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
        if not ready:
            if proc.poll() is not None:
                raise SystemExit(f"{what}: exited with {proc.returncode}")
            continue
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"{what}: exited with {proc.wait(5)}")
        if line.startswith("{"):
            return dict(json.loads(line))


@contextlib.contextmanager
def simulator(procs: Procs, *faults: str) -> Iterator[tuple[str, str]]:
    command = [sys.executable, "-m", "rxinvest", "sim", "--port", "0", "--speed", "0.001"]
    command += [arg for fault in faults for arg in ("--fault", fault)]
    proc = procs.spawn(command)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        match = re.search(r"(ws://\S+/ws/)", lines[0])
        if not match:
            raise SystemExit(f"the simulator did not start: {lines}")
        yield match.group(1), lines[1].rsplit(" ", 1)[1].strip()
    finally:
        procs.stop(proc)


class Run:
    """One benchmark run: the NATS server, the options, the processes."""

    def __init__(self, args: argparse.Namespace, procs: Procs, nats_url: str, tmp: str) -> None:
        self.args, self.procs, self.nats_url, self.tmp = args, procs, nats_url, tmp
        self._ns = 0

    def spawn(
        self, role: str, sim: tuple[str, str], mode: str, ns: int, out: str = "", profile_to: str = ""
    ) -> subprocess.Popen[str]:
        lifetime = START_TIMEOUT + WARMUP + self.args.seconds + 60
        command = [sys.executable, str(HERE), "--role", role, "--mode", mode, "--ns", str(ns)]
        command += ["--sim", sim[0], "--token", sim[1], "--nats", self.nats_url, "--out", out]
        command += ["--lifetime", str(lifetime), "--profile-to", profile_to]
        return self.procs.spawn(command, cwd=HERE.parent)

    def group(
        self, sim: tuple[str, str], role: str, mode: str, profile: str = ""
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[str]]:
        """One set-up: a gateway (for consumers) and ``count`` readers over one window."""
        self._ns += 1
        ns, args = self._ns, self.args
        count = 1 if role == "direct1" else args.consumers
        kind = "direct" if role.startswith("direct") else "consumer"
        gateway = None
        outs = [f"{self.tmp}/{mode}-{ns}-{i}.json" for i in range(count + 1)]
        started: list[subprocess.Popen[str]] = []
        try:
            if kind == "consumer":
                gateway = self.spawn(
                    "gateway", sim, mode, ns, outs[-1], f"{profile}/gateway" if profile else ""
                )
                read_json(gateway, time.monotonic() + START_TIMEOUT, "the gateway")
            for i in range(count):
                prof = f"{profile}/consumer" if profile and i == 0 else ""
                started.append(self.spawn(kind, sim, mode, ns, outs[i], prof))
            deadline = time.monotonic() + START_TIMEOUT
            for i, proc in enumerate(started):
                read_json(proc, deadline, f"{kind} {i}")
            if gateway is not None and mode.startswith("latency"):
                assert gateway.stdin is not None
                gateway.stdin.write("direct\n")
                gateway.stdin.flush()
                read_json(gateway, time.monotonic() + START_TIMEOUT, "the gateway's direct subscriber")
            start = time.time() + WARMUP
            for proc in [*started, *([gateway] if gateway else [])]:
                assert proc.stdin is not None
                proc.stdin.write(f"{start} {args.seconds}\n")
                proc.stdin.flush()
            deadline = time.monotonic() + WARMUP + args.seconds + 30
            results = [read_json(proc, deadline, f"{kind} {i}") for i, proc in enumerate(started)]
            gateway_result = read_json(gateway, deadline, "the gateway") if gateway else None
            return gateway_result, results, outs
        finally:
            for proc in started:
                self.procs.stop(proc)
            if gateway is not None:
                self.procs.stop(gateway)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fanout(run: Run) -> tuple[float, float]:
    args = run.args
    n = args.consumers
    rows: dict[str, list[float]] = {"direct1": [], "bus": [], "directN": [], "gateway": [], "bus_min": []}
    losses = {"gaps": 0, "dropped": 0}
    shares: list[float] = []
    print(
        f"fan-out: burst (as fast as each socket takes it) of trades + depth-{DEPTH} books of "
        f"{len(IDS)} instruments, {args.seconds:g} s windows, {args.rounds} rounds, {n} consumers"
    )
    with simulator(run.procs, "burst=yes") as sim:
        for round_ in range(args.rounds):
            order = ["direct1", "bus", "directN"]
            if round_ % 2:
                order.reverse()
            for role in order:
                gateway, results, _ = run.group(sim, role, "fanout")
                rates = [r["rate"] for r in results]
                for r in results:
                    losses["gaps"] += r["gaps"]
                    losses["dropped"] += r["dropped"]
                if role == "bus":
                    assert gateway is not None
                    rows["bus"].append(median(rates))
                    rows["bus_min"].append(min(rates))
                    rows["gateway"].append(gateway["extra_rate"])
                    shares.append(median(rates) / gateway["extra_rate"] if gateway["extra_rate"] else 0.0)
                else:
                    rows[role].append(median(rates))
                shown = " ".join(f"{r:,.0f}" for r in rates)
                extra = f"; gateway published {gateway['extra_rate']:,.0f}/s" if gateway else ""
                print(f"  round {round_ + 1} {role:<8} events/s per reader: {shown}{extra}", flush=True)
    d1, bus, dn = median(rows["direct1"]), median(rows["bus"]), median(rows["directN"])
    print(f"\n{'set-up':<28} {'events/s per reader':>20} {'vs direct x1':>13} {'vs direct xN':>13}")
    print(f"{'direct x1':<28} {d1:>20,.0f} {1:>12.2f}x {d1 / dn:>12.2f}x")
    print(f"{f'direct x{n} (each)':<28} {dn:>20,.0f} {dn / d1:>12.2f}x {1:>12.2f}x")
    print(f"{f'bus, {n} consumers (median)':<28} {bus:>20,.0f} {bus / d1:>12.2f}x {bus / dn:>12.2f}x")
    slowest = median(rows["bus_min"])
    print(f"{'bus, slowest consumer':<28} {slowest:>20,.0f} {slowest / d1:>12.2f}x {slowest / dn:>12.2f}x")
    print(f"{'gateway published':<28} {median(rows['gateway']):>20,.0f}")
    print(
        f"losses: consumers got {median(shares):.1%} of what the gateway published (median); "
        f"gaps seen {losses['gaps']}, dropped from backlogs {losses['dropped']}"
    )
    return bus / dn, bus / d1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def latency(run: Run, mode: str = "latency") -> float:
    args = run.args
    with simulator(run.procs, "burst=yes", f"burst_rate={args.rate}") as sim:
        _, results, outs = run.group(sim, "bus", mode)
    direct = {key: (recv, stamp) for recv, key, stamp in json.loads(Path(outs[-1]).read_text())}
    added: list[float] = []
    e2e_bus: list[float] = []
    unpaired = 0
    for path in outs[:-1]:
        for recv, key, stamp in json.loads(Path(path).read_text()):
            e2e_bus.append((recv - stamp) * 1e3)
            pair = direct.get(key)
            if pair is None:
                unpaired += 1
            else:
                added.append((recv - pair[0]) * 1e3)
    lo, hi = results[0]["start"], results[0]["end"]
    e2e_direct = [(recv - stamp) * 1e3 for recv, stamp in direct.values() if lo <= recv <= hi]
    rates = ", ".join(f"{r['rate']:,.0f}" for r in results)
    how = "on each consumer's NATS thread" if mode == INLINE else "on each consumer's delivery threads"
    print(
        f"\nlatency, delivered {how}: {args.rate:,.0f} trades/s of {len(IDS)} instruments,"
        f" {args.seconds:g} s, {args.consumers} consumers (events/s each: {rates}); ms"
    )
    print(f"{'':<40} {'p50':>7} {'p99':>7} {'p99.9':>7} {'max':>8} {'events':>8}")
    for name, values in (
        ("added: consumer - direct receive", added),
        ("end to end, direct (sim stamp to on_next)", e2e_direct),
        ("end to end, consumers", e2e_bus),
    ):
        print(
            f"{name:<40} {percentile(values, 0.5):>7.3f} {percentile(values, 0.99):>7.3f} "
            f"{percentile(values, 0.999):>7.3f} {max(values, default=float('nan')):>8.3f} {len(values):>8}"
        )
    gaps = sum(r["gaps"] for r in results)
    print(f"unpaired consumer events: {unpaired}; gaps seen by consumers: {gaps}")
    return percentile(added, 0.99)


def profile(run: Run, directory: str) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    with simulator(run.procs, "burst=yes") as sim:
        gateway, results, _ = run.group(sim, "bus", "fanout", profile=directory)
    assert gateway is not None
    rates = ", ".join(f"{r['rate']:,.0f}" for r in results)
    print(
        f"\nprofiled bus round (slower under cProfile): gateway {gateway['extra_rate']:,.0f}/s,"
        f" consumers {rates}"
    )
    print(f"profiles: {directory}/gateway.txt, {directory}/consumer.txt (and .prof)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measuring window")
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=2000.0, help="trades a second of the latency run")
    parser.add_argument("--rounds", type=int, default=2, help="fan-out rounds (medians)")
    parser.add_argument("--profile", default="", help="a directory: also profile one bus round")
    parser.add_argument("--skip", choices=("fanout", "latency"), action="append", default=[])
    for hidden in ("--role", "--mode", "--sim", "--token", "--nats", "--out", "--profile-to"):
        parser.add_argument(hidden, default="", help=argparse.SUPPRESS)
    parser.add_argument("--ns", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=120.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        worker(args)
        return
    from rxinvest.bus.natsd import NatsServer

    procs = Procs()
    try:
        with NatsServer() as nats, tempfile.TemporaryDirectory() as tmp:
            run = Run(args, procs, nats.url, tmp)
            verdicts = []
            if "fanout" not in args.skip:
                ratio, ratio1 = fanout(run)
                verdicts.append(
                    f"fan-out ratio {ratio:.2f} (goal >= 0.5): {'ok' if ratio >= 0.5 else 'MISSED'}"
                    f" [per consumer / per direct client, {args.consumers} of each; vs one direct client"
                    f" alone: {ratio1:.2f}]"
                )
            if "latency" not in args.skip:
                for mode, how in (("latency", "the default"), (INLINE, "scheduler=ImmediateScheduler()")):
                    p99 = latency(run, mode)
                    verdicts.append(
                        f"added latency p99 {p99:.3f} ms (goal < 2 ms), consumers delivering with {how}:"
                        f" {'ok' if p99 < 2 else 'MISSED'}"
                    )
            if args.profile:
                profile(run, args.profile)
            print()
            print("\n".join(verdicts))
    finally:
        procs.close()


if __name__ == "__main__":
    main()
