"""The ``rxinvest`` command line: ``demo``, ``sim``, ``decode``, ``record`` and ``replay``.

Rules: an error the user can cause (a bad option or value, an unknown fault, a file that cannot be
read, a port that is taken ...) is one line on stderr, ``rxinvest: <what is wrong>``, and exit
status 2, never a traceback. ``decode`` exits 1 when some lines did not decode; ``demo`` when
nothing at all arrived; ``replay --check`` when the typed events differ from the recorded digest.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from rxinvest import __version__
from rxinvest.errors import ConfigurationError, DecodeError, RxInvestError
from rxinvest.wire import Stream, decode

if TYPE_CHECKING:
    from reactivex import Observable

_USAGE_ERROR = 2
_STREAMS = [s.value for s in Stream]
_DECODE_HELP = f"""\
Decode JSON frames into typed events: one line of output per frame, the event's repr, or the
error (on stderr, with the line number).

The input is JSON lines: one frame per line, a JSON object exactly as the stream's server sends
it, such as {{"trade": {{"figi": "BBG004730N88", "quantity": "3"}}}}; blank lines are skipped.

{textwrap.fill("STREAM is the stream the frames came from, one of: " + ", ".join(_STREAMS) + ".", 95)}

Exit status: 0 if every frame decoded, 1 if some did not, 2 if the input could not be read."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the command's one-line form (its subcommands' too)."""

    def error(self, message: str) -> NoReturn:
        print(f"rxinvest: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(_USAGE_ERROR)


def _decode(args: argparse.Namespace) -> int:
    """Decode the frames of ``args.file``, one per line, and print each typed event (or the error)."""
    if args.file == "-":
        return _decode_lines(sys.stdin, args.stream)
    try:
        with open(args.file, encoding="utf-8") as frames:
            return _decode_lines(frames, args.stream)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(f"cannot read {args.file}: {reason}") from exc


def _decode_lines(lines: Iterable[str], stream: str) -> int:
    failures = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            print(repr(decode(line, stream=stream)))
        except DecodeError as exc:
            failures += 1
            print(f"line {number}: {_why_not(line, exc)}", file=sys.stderr)
    return 1 if failures else 0


def _why_not(line: str, error: DecodeError) -> str:
    """What is wrong with a line that did not decode: not a JSON object at all, or not a frame."""
    try:
        is_object = isinstance(json.loads(line), dict)
    except ValueError:
        is_object = False
    if not is_object:
        return f"not a JSON object (one frame per line expected): {error}"
    return str(error)


def _sim(args: argparse.Namespace) -> int:
    """Run the simulator until Ctrl-C or SIGTERM, printing where to connect."""
    import signal
    import threading

    from rxinvest.sim import Faults, serve

    faults, next_faults = Faults.parse(args.fault), Faults.parse(args.fault_next)
    # The handlers only set a flag, so a signal that comes at any moment (while starting, while
    # printing) stops the simulator cleanly instead of interrupting whatever runs.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with serve(
        port=args.port,
        seed=args.seed,
        scenario=args.scenario,
        speed=args.speed,
        faults=faults,
        token=args.token,
        readonly_token=args.readonly_token,
    ) as sim:
        if next_faults.any:
            sim.fault_next(next_faults)
        lines = [
            f"rxinvest simulator listening on {sim.base_url}",
            # The simulator's own tokens, valid on this machine only: printing them is the point.
            f"token (full access): {sim.token}",
            f"token (market data only): {sim.readonly_token}",
            f"accounts: {', '.join(sim.accounts)}",
            "instruments (TICKER_CLASSCODE, uid):",
            *_two_columns((i.instrument_id, i.uid) for i in sim.instruments),
            "press Ctrl-C to stop",
        ]
        print("\n".join(lines), flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping", flush=True)
    return 0


def _gateway(args: argparse.Namespace) -> int:
    """Run a bus gateway until Ctrl-C or SIGTERM (or ``--duration``), with a status line on stderr."""
    import contextlib
    import signal
    import threading
    import time

    import rxinvest
    from rxinvest.bus import Gateway, Retention
    from rxinvest.bus.natsd import NatsServer

    if not args.nats and not args.demo:
        raise ConfigurationError("give --nats URL (repeatable for a cluster), or --demo for a local one")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with contextlib.ExitStack() as stack:
        servers = args.nats
        if not servers:
            servers = [stack.enter_context(NatsServer()).url]
        target = args.target or ("sim" if args.demo else None)
        sim_options = {"seed": args.seed} if target == "sim" else None
        client = rxinvest.connect(target=target, sim_options=sim_options, rest_url=args.rest_url)
        retention = Retention(max_age=args.max_age, max_bytes=args.max_bytes, replicas=args.replicas)
        gateway = Gateway(
            client,
            servers,
            name=args.name,
            prefix=args.prefix,
            stream=args.stream,
            retention=retention,
            lease=args.lease,
            takeover_after=args.takeover_after,
        )
        stack.callback(gateway.close)
        gateway.start()
        lines = [
            f"rxinvest gateway {gateway.id} ({args.name}) on {', '.join(servers)}",
            f"consume with: rxinvest.bus.connect({servers[0]!r})",
        ]
        if client.sim is not None:
            lines.append(f"embedded simulator: accounts {', '.join(client.sim.accounts)}")
        print("\n".join(lines), flush=True)
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stop.wait(1.0):
            state = "active" if gateway.active else "standby"
            held = gateway.demand()
            print(
                f"\rgateway: {state}, {len(held)} held, {gateway.published:,} published",
                end="",
                file=sys.stderr,
                flush=True,
            )
            if deadline is not None and time.monotonic() >= deadline:
                break
        print("\nstopping", file=sys.stderr, flush=True)
    return 0


def _two_columns(rows: Iterable[tuple[str, str]]) -> list[str]:
    """Indented lines of two columns, the first padded to its widest entry."""
    rows = list(rows)
    width = max((len(first) for first, _ in rows), default=0)
    return [f"  {first:<{width}}  {second}" for first, second in rows]


def _demo(args: argparse.Namespace) -> int:
    """The live demo; exit status 1 if nothing at all arrived."""
    from rxinvest.demo import run

    counts = run(duration=args.duration, target=args.target, accounts=args.account)
    return 0 if sum(counts.values()) else 1


def _record_streams(text: str) -> list[str]:
    """``--streams``: market-data kinds (:class:`~rxinvest.model.kinds.Kind`) and account streams."""
    from rxinvest.model.kinds import Kind

    valid = [k.value for k in Kind] + [s.value for s in _ACCOUNT_STREAMS]
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown streams {unknown}; choose among: {', '.join(valid)}")
    return names


_ACCOUNT_STREAMS = (Stream.ORDER_STATE, Stream.TRADES, Stream.POSITIONS, Stream.PORTFOLIO)


def _record(args: argparse.Namespace) -> int:
    """Record the chosen streams for ``args.duration`` seconds, with a progress line on stderr."""
    import time

    import rxinvest
    from rxinvest import model as m
    from rxinvest.demo import INSTRUMENTS
    from rxinvest.model.kinds import Kind

    sim_options = {"seed": args.seed} if args.target in (None, "sim") and not args.token else None
    with rxinvest.connect(
        args.token, target=args.target, record=args.file, sim_options=sim_options
    ) as client:
        instruments = args.instrument or list(INSTRUMENTS)
        accounts = args.account or (client.sim.accounts[:1] if client.sim is not None else [])
        md, orders, operations = client.market_data, client.orders, client.operations
        sources: dict[str, Callable[[], Observable[Any]]] = {
            Kind.ORDER_BOOKS.value: lambda: md.order_books(instruments, depth=args.depth),
            Kind.TRADES.value: lambda: md.trades(instruments),
            Kind.CANDLES.value: lambda: md.candles(
                instruments, m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE
            ),
            Kind.LAST_PRICES.value: lambda: md.last_prices(instruments),
            Kind.INFO.value: lambda: md.trading_statuses(instruments),
            Stream.ORDER_STATE.value: lambda: orders.order_states(accounts),
            Stream.TRADES.value: lambda: orders.order_trades(accounts),
            Stream.POSITIONS.value: lambda: operations.positions(accounts),
            Stream.PORTFOLIO.value: lambda: operations.portfolio(accounts),
        }
        for name in args.streams:
            if name in (s.value for s in _ACCOUNT_STREAMS) and not accounts:
                raise ConfigurationError(f"{name} needs an account: pass --account")
            sources[name]().subscribe(lambda _: None, lambda exc: None)
        recorder = client.recorder
        started = time.monotonic()
        deadline = started + args.duration
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.5, left))
            _progress(recorder, time.monotonic() - started)
    _progress(recorder, time.monotonic() - started, final=True)
    if recorder.error is not None:
        raise ConfigurationError(f"the recording stopped: {recorder.error}")
    return 0


def _progress(recorder: object, seconds: float, *, final: bool = False) -> None:
    frames, size = getattr(recorder, "frames", 0), getattr(recorder, "bytes", 0)
    lost = getattr(recorder, "lost", 0)
    line = (
        f"recording: {frames:,} frames, {size / 1e3:,.1f} kB, {frames / max(seconds, 1e-9):,.0f} frames/s"
        + (f", {lost:,} lost" if lost else "")
        + (f" in {seconds:.1f} s" if final else "")
    )
    print(f"\r{line}", end="\n" if final else "", file=sys.stderr, flush=True)


def _replay(args: argparse.Namespace) -> int:
    """Print what a recording holds; with ``--check``, compare its typed events with its digest."""
    from rxinvest.replay.digest import summarize

    summary = summarize(args.file)
    span = (
        "empty"
        if summary.start is None
        else f"{summary.seconds:,.1f} s from {summary.start:%Y-%m-%d %H:%M:%S.%f} UTC"
    )
    print(f"{summary.path}: recorded by rxinvest {summary.version or '?'} ({summary.dialect}), {span}")
    for stream, (received, sent) in summary.frames.items():
        connections = summary.connections[stream]
        plural = "s" * (connections != 1)
        print(f"  {stream}: {connections} connection{plural}, {received:,} frames received, {sent:,} sent")
    events = ", ".join(f"{name} {count:,}" for name, count in summary.events.items())
    print(f"  events: {events or 'none'}")
    shown = ", ".join(summary.instruments[:8]) + (" ..." if len(summary.instruments) > 8 else "")
    print(f"  instruments: {len(summary.instruments)}{': ' + shown if shown else ''}")
    lost = f"lines lost by the recorder {summary.lost:,}"
    print(f"  reconnects {summary.reconnects}, gaps marked {summary.gaps}, {lost}")
    end = "ends cleanly" if summary.clean else f"stops short: {summary.truncated or 'no end mark'}"
    print(f"  {end}; digest {'stored' if summary.digests is not None else 'not stored'}")
    if not args.check:
        return 0
    result = summary.check
    if result.stored is None:
        print(
            "check: no digest stored (the recorder did not close, or ran with digest=False)", file=sys.stderr
        )
        return 1
    if not result.ok:
        print(
            f"check: the typed events differ from the recorded digest in {', '.join(result.differing)}",
            file=sys.stderr,
        )
        return 1
    print(f"check: the typed events of {len(result.computed)} streams match the digest stored at record time")
    return 0


def _parser() -> _Parser:
    parser = _Parser(
        prog="rxinvest",
        description="rxinvest: a live demo, a local simulator, a frame decoder, a recorder and its player.",
    )
    parser.add_argument("--version", action="version", version=f"rxinvest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    decoder = commands.add_parser(
        "decode",
        help="decode JSON frames (one per line) into typed events",
        description=_DECODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decoder.add_argument(
        "--stream", required=True, choices=_STREAMS, metavar="STREAM", help="the stream the frames came from"
    )
    decoder.add_argument(
        "file", nargs="?", default="-", help="a file of JSON lines, or - for stdin (default)"
    )
    decoder.set_defaults(run=_decode)

    from rxinvest.sim.market import SCENARIOS

    sim = commands.add_parser("sim", help="run the local simulator of the T-Invest WebSocket proxy")
    sim.add_argument("--port", type=int, default=8765, help="TCP port on 127.0.0.1 (0: any free port)")
    sim.add_argument("--seed", type=int, default=1, help="seed of the simulated market and accounts")
    sim.add_argument("--scenario", default="normal", choices=sorted(SCENARIOS))
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    sim.add_argument(
        "--token", help="the full-access token (default: a new random one), e.g. to restart under a client"
    )
    sim.add_argument("--readonly-token", help="the market-data-only token (default: a new random one)")
    sim.add_argument(
        "--fault", action="append", default=[], metavar="NAME=VALUE", help="a fault of every connection"
    )
    sim.add_argument(
        "--fault-next",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a fault of the next connection",
    )
    sim.set_defaults(run=_sim)

    demo = commands.add_parser("demo", help="a live terminal view of market data and an account")
    demo.add_argument("--duration", type=float, default=20.0, help="seconds to run (default 20)")
    demo.add_argument(
        "--target",
        default=None,
        help="sim (default without INVEST_TOKEN), prod, sandbox or a ws(s):// base URL",
    )
    demo.add_argument("--account", action="append", default=[], help="account ids to show (real targets)")
    demo.set_defaults(run=_demo)

    from rxinvest.model.kinds import Kind

    default_streams = [Kind.ORDER_BOOKS.value, Kind.TRADES.value, Kind.LAST_PRICES.value]
    default_streams += [Stream.ORDER_STATE.value, Stream.POSITIONS.value]
    recorder = commands.add_parser(
        "record",
        help="record streams to a file (zstd JSON lines), from the embedded simulator by default",
        description="Record the frames of the chosen streams, both ways, with their times and the "
        "connections' lifecycle, to FILE (JSON lines, zstd-compressed, or gzip for a FILE named *.gz; "
        "never the token). A progress "
        "line (frames, bytes, rate) goes to stderr.",
    )
    recorder.add_argument("--duration", type=float, default=10.0, help="seconds to record (default 10)")
    recorder.add_argument(
        "--streams",
        type=_record_streams,
        default=default_streams,
        help=f"comma-separated market-data kinds and account streams (default: {','.join(default_streams)})",
    )
    recorder.add_argument(
        "--target",
        default=None,
        help="sim (default without INVEST_TOKEN), prod, sandbox or a ws(s):// base URL",
    )
    recorder.add_argument("--token", default=None, help="the API token (default: INVEST_TOKEN)")
    recorder.add_argument("--instrument", action="append", default=[], help="instrument ids (repeatable)")
    recorder.add_argument("--account", action="append", default=[], help="account ids (repeatable)")
    recorder.add_argument("--depth", type=int, default=10, help="order-book depth (default 10)")
    recorder.add_argument("--seed", type=int, default=1, help="the embedded simulator's seed")
    recorder.add_argument("file", metavar="FILE", help="the recording to write (overwritten)")
    recorder.set_defaults(run=_record)

    player = commands.add_parser(
        "replay",
        help="say what a recording holds; --check it against the digest stored when it was made",
        description="Summarise a recording: streams, connections, frames, typed events per kind, "
        "instruments, time span, reconnects, gaps and losses. With --check, decode every frame again "
        "and compare the typed events with the digest the recorder stored when it closed (exit 1 if "
        "they differ or none is stored). To replay it to a pipeline: rxinvest.connect(replay=FILE).",
    )
    player.add_argument("--check", action="store_true", help="compare with the digest stored at record time")
    player.add_argument("file", metavar="FILE", help="a recording (rxinvest record, or connect(record=...))")
    player.set_defaults(run=_replay)

    gateway = commands.add_parser(
        "gateway",
        help="hold the streams of one token and publish them to NATS JetStream (rxinvest[bus])",
        description="Hold the T-Invest streams of one token and serve them to rxinvest.bus.connect() "
        "consumers over NATS JetStream: demand is counted across consumers, every event is published "
        "once. Gateways of one --name are one active and standbys. --demo runs a local nats-server "
        "and the embedded simulator: try the bus with one command.",
    )
    gateway.add_argument("--nats", action="append", default=[], help="a NATS server URL (repeatable)")
    gateway.add_argument("--demo", action="store_true", help="a local nats-server, the embedded simulator")
    gateway.add_argument(
        "--target", default=None, help="sim, prod, sandbox or a ws(s):// base URL (token: INVEST_TOKEN)"
    )
    gateway.add_argument("--rest-url", default=None, help="the REST API that fills account gaps")
    gateway.add_argument("--name", default="rxinvest", help="the gateway group: one active per name")
    gateway.add_argument("--prefix", default="tinvest", help="the subject prefix (default tinvest)")
    gateway.add_argument("--stream", default="TINVEST", help="the JetStream stream (default TINVEST)")
    gateway.add_argument("--max-age", type=float, default=86_400.0, help="seconds events are kept (a day)")
    gateway.add_argument("--max-bytes", type=int, default=1 << 30, help="bytes kept at most (1 GiB)")
    gateway.add_argument("--replicas", type=int, default=1, help="stream replicas (3 on a cluster)")
    gateway.add_argument("--lease", type=float, default=10.0, help="seconds a silent consumer is kept")
    gateway.add_argument(
        "--takeover-after", type=float, default=3.0, help="seconds before a standby takes over"
    )
    gateway.add_argument("--seed", type=int, default=1, help="the embedded simulator's seed")
    gateway.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    gateway.set_defaults(run=_gateway)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except RxInvestError as exc:
        one_line = " ".join(str(exc).splitlines())
        print(f"rxinvest: {one_line}", file=sys.stderr)
        return _USAGE_ERROR
    except KeyboardInterrupt:  # Ctrl-C in the demo: the user's way to stop it, not an error
        return 130


if __name__ == "__main__":
    sys.exit(main())
