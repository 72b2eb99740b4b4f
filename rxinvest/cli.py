"""The ``rxinvest`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rxinvest import __version__
from rxinvest.errors import DecodeError, RxInvestError
from rxinvest.wire import Stream, decode


def _decode(args: argparse.Namespace) -> int:
    """Decode JSON frames, one per line, and print each typed event (or the error) on a line."""
    failures = 0
    with open(args.file, encoding="utf-8") if args.file != "-" else sys.stdin as frames:
        for number, line in enumerate(frames, 1):
            if not line.strip():
                continue
            try:
                print(repr(decode(line, stream=args.stream)))
            except DecodeError as exc:
                failures += 1
                print(f"line {number}: {exc}", file=sys.stderr)
    return 1 if failures else 0


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
        port=args.port, seed=args.seed, scenario=args.scenario, speed=args.speed, faults=faults
    ) as sim:
        if next_faults.any:
            sim.fault_next(next_faults)
        print(f"rxinvest simulator listening on {sim.base_url}", flush=True)
        print(f"token (full access): {sim.token}", flush=True)
        print(f"token (market data only): {sim.readonly_token}", flush=True)
        print(f"accounts: {', '.join(sim.accounts)}", flush=True)
        print("press Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping", flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    """The live demo; exit status 1 if nothing at all arrived."""
    from rxinvest.demo import run

    counts = run(duration=args.duration, target=args.target, accounts=args.account)
    return 0 if sum(counts.values()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rxinvest", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rxinvest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    decoder = commands.add_parser("decode", help="decode JSON frames (one per line) into typed events")
    decoder.add_argument("--stream", required=True, choices=[s.value for s in Stream])
    decoder.add_argument("file", nargs="?", default="-", help="a file of frames, or - for stdin")
    decoder.set_defaults(run=_decode)

    from rxinvest.sim.market import SCENARIOS

    sim = commands.add_parser("sim", help="run the local simulator of the T-Invest WebSocket proxy")
    sim.add_argument("--port", type=int, default=8765, help="TCP port on 127.0.0.1 (0: any free port)")
    sim.add_argument("--seed", type=int, default=1, help="seed of the simulated market and accounts")
    sim.add_argument("--scenario", default="normal", choices=sorted(SCENARIOS))
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
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
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except RxInvestError as exc:
        print(f"rxinvest: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
