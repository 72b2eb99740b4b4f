"""A bus consumer as a process of its own, for tests/bus/test_processes.py.

    python _consumer_proc.py --nats URL --out FILE [--name N] [--books ID,...] [--depth D]
                             [--trades ID,...] [--orders ACCOUNT,...] [--stop FILE] [--go FILE]

Connects with ``rxinvest.bus.connect(URL, name=N)``, subscribes ``.with_markers()`` to what it is
told, and appends one JSON line per item to FILE, flushed at once (a SIGKILL loses nothing written):

* ``{"src": "books"|"trades"|"orders", "t": "event", "data": <rxinvest.wire.dump of the event>}``
* ``{"src": ..., "t": "marker", "type": "Subscribed"|"Gap"|..., "repr": ...}``
* ``{"t": "ready"}`` once subscribed (after ``connect()`` returned), ``{"t": "error", ...}``,
  ``{"t": "closed"}`` after a clean close.

With ``--go`` it imports everything, writes ``{"t": "waiting"}`` and connects only once that file
exists (a restart at a chosen moment). It runs until the file ``--stop`` exists (then closes
the client cleanly and exits 0), for at most
``--max-seconds`` (a safety net: exit 3).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import rxinvest.bus
from rxinvest.derived import Marker
from rxinvest.wire import dump


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nats", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", default=None)
    parser.add_argument("--books", default="")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--trades", default="")
    parser.add_argument("--orders", default="")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--stop", default=None)
    parser.add_argument("--go", default=None)
    parser.add_argument("--max-seconds", type=float, default=90.0)
    args = parser.parse_args()

    lock = threading.Lock()
    out = open(args.out, "a", encoding="utf-8")  # noqa: SIM115 (closed at the end, flushed per line)

    def write(record: dict[str, object]) -> None:
        line = json.dumps(record, default=str, sort_keys=True)
        with lock:
            out.write(line + "\n")
            out.flush()

    def observer(src: str) -> dict[str, object]:
        def on_next(item: object) -> None:
            if isinstance(item, Marker):
                write({"src": src, "t": "marker", "type": type(item).__name__, "repr": repr(item)})
            else:
                write({"src": src, "t": "event", "data": dump(item)})  # type: ignore[arg-type]

        def on_error(error: Exception) -> None:
            write({"src": src, "t": "error", "repr": repr(error)})

        return {"on_next": on_next, "on_error": on_error}

    deadline = time.monotonic() + args.max_seconds
    if args.go:  # started ahead (the imports are done), connects when told
        write({"t": "waiting"})
        while not os.path.exists(args.go):
            if time.monotonic() > deadline:
                write({"t": "timeout"})
                return 3
            time.sleep(0.01)
    client = rxinvest.bus.connect(args.nats, name=args.name, lease=args.lease, open_timeout=15)
    subscriptions = []
    if args.books:
        source = client.market_data.order_books(args.books.split(","), args.depth, conflate=False)
        subscriptions.append(source.with_markers().subscribe(**observer("books")))
    if args.trades:
        source = client.market_data.trades(args.trades.split(","))
        subscriptions.append(source.with_markers().subscribe(**observer("trades")))
    if args.orders:
        source = client.orders.order_states(args.orders.split(","))
        subscriptions.append(source.with_markers().subscribe(**observer("orders")))
    write({"t": "ready", "pid": os.getpid()})
    while not (args.stop and os.path.exists(args.stop)):
        if time.monotonic() > deadline:
            write({"t": "timeout"})
            return 3
        time.sleep(0.05)
    for subscription in subscriptions:
        subscription.dispose()
    client.close()
    write({"t": "closed"})
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
