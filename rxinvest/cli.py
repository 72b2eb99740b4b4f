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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rxinvest", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rxinvest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    decoder = commands.add_parser("decode", help="decode JSON frames (one per line) into typed events")
    decoder.add_argument("--stream", required=True, choices=[s.value for s in Stream])
    decoder.add_argument("file", nargs="?", default="-", help="a file of frames, or - for stdin")
    decoder.set_defaults(run=_decode)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except RxInvestError as exc:
        print(f"rxinvest: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
