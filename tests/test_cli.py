"""The command line: `rxinvest sim` serves until interrupted and says how to reach it; `rxinvest
decode` prints typed events; errors are one line and exit 2; the demo's view fits 80x24."""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from rxinvest import model as m
from rxinvest.demo import COLUMNS, INSTRUMENTS, ROWS, _View
from rxinvest.sim import CATALOGUE
from rxinvest.wire import Stream
from tests.sim.wsclient import closed_with, first, send

_PATH = "tinkoff.public.invest.api.contract.v1.MarketDataStreamService/MarketDataStream"


def _rxinvest(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rxinvest", *args], capture_output=True, text=True, input=stdin, timeout=30
    )


def _printed(process: subprocess.Popen[str]) -> list[str]:
    """What a running `rxinvest sim` printed before it waits for Ctrl-C."""
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or lines[-1] != "press Ctrl-C to stop":
        assert len(lines) < 100, lines
        line = process.stdout.readline()
        assert line, lines  # the process ended
        lines.append(line.rstrip("\n"))
    return lines


def _started(process: subprocess.Popen[str]) -> tuple[str, str]:
    """The stream URL and full-access token a running `rxinvest sim` printed."""
    lines = _printed(process)
    match = re.search(r"(ws://127\.0\.0\.1:\d+/ws/)", lines[0])
    assert match, lines
    token = lines[1].rsplit(" ", 1)[1].strip()
    return match.group(1) + _PATH, token


def test_sim_applies_faults_and_stops_on_interrupt() -> None:
    from websockets.sync.client import connect

    command = [sys.executable, "-m", "rxinvest", "sim", "--port", "0", "--fault-next", "close_code=4008"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url, token = _started(process)
        with connect(url, subprotocols=["json", token], open_timeout=5) as ws:  # the next connection
            send(ws, m.GetMySubscriptions())
            assert closed_with(ws)[0] == 4008
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "stopping" in out


def test_sim_serves_a_third_party_client() -> None:
    from websockets.sync.client import connect

    process = subprocess.Popen(
        [sys.executable, "-m", "rxinvest", "sim", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        url, token = _started(process)
        with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5) as ws:
            send(ws, m.SubscribeLastPriceRequest(
                subscription_action=m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE,
                instruments=(m.LastPriceInstrument(instrument_id="SBER_TQBR"),),
            ))  # fmt: skip
            price = first(ws, "MarketDataStream", lambda e: isinstance(e, m.LastPrice))
        assert price.instrument_uid == "e6123145-9665-43e0-8413-cd61b8aa9b13"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_decode_prints_events_and_reports_bad_lines(tmp_path: Path) -> None:
    frames = tmp_path / "frames.jsonl"
    frames.write_text('{"trade": {"quantity": "3"}}\nnot json\n\n{"ping": {}}\n')
    result = subprocess.run(
        [sys.executable, "-m", "rxinvest", "decode", "--stream", "MarketDataStream", str(frames)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("Trade(") and "quantity=3" in result.stdout
    assert "Ping(" in result.stdout
    assert "line 2:" in result.stderr


def test_bad_faults_are_reported_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rxinvest", "sim", "--port", "0", "--fault", "close_code=4999"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "close_code" in result.stderr
    assert "Traceback" not in result.stderr


def test_sim_takes_its_tokens_and_prints_them_with_the_accounts_and_instrument_ids() -> None:
    from websockets.sync.client import connect

    command = ["sim", "--port", "0", "--token", "t.cli-full", "--readonly-token", "t.cli-read"]
    process = subprocess.Popen(
        [sys.executable, "-m", "rxinvest", *command], stdout=subprocess.PIPE, text=True
    )
    try:
        lines = _printed(process)
        url = re.search(r"ws://\S+", lines[0]).group(0) + _PATH  # type: ignore[union-attr]
        with connect(url, additional_headers={"Authorization": "Bearer t.cli-full"}, open_timeout=5) as ws:
            send(ws, m.GetMySubscriptions())
            send(ws, m.PingRequest(time=datetime(2025, 1, 1, tzinfo=UTC)))
            assert first(ws, "MarketDataStream", lambda e: isinstance(e, m.Ping))  # accepted, not closed
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert "token (full access): t.cli-full" in lines
    assert "token (market data only): t.cli-read" in lines
    assert "accounts: 2000000001, 2000000002" in lines  # the default accounts
    listed = [line.split() for line in lines if line.startswith("  ")]
    assert listed == [[f"{i.ticker}_{i.class_code}", i.uid] for i in CATALOGUE]
    assert max(map(len, lines)) <= COLUMNS


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["sim", "--port", "eighty"],
            "argument --port: invalid int value: 'eighty' (see rxinvest sim --help)",
        ),
        (["sim", "--port", "70000"], "port must be an int from 0 (any free port) to 65535, not 70000"),
        (["sim", "--port", "0", "--speed", "0"], "speed must be a positive number, not 0.0"),
        (["sim", "--port", "0", "--fault", "explode=1"], "bad fault 'explode=1': expected NAME=VALUE"),
        (["sim", "--port", "0", "--fault", "close_code=4999"], "close_code must be one of"),
        (["sim", "--port", "0", "--token", ""], "token must not be empty"),
        (["sim", "--port", "0", "--token", "a", "--readonly-token", "a"], "must differ"),
        (["sim", "--port", "BUSY"], "cannot listen on 127.0.0.1:BUSY: address already in use"),
        (["sim", "--scenario", "apocalypse"], "argument --scenario: invalid choice: 'apocalypse'"),
        (["decode", "--stream", "Nope"], "argument --stream: invalid choice: 'Nope'"),
        (
            ["decode", "--stream", "MarketDataStream", "MISSING"],
            "cannot read MISSING: No such file or directory",
        ),
        (["demo", "--duration", "soon"], "argument --duration: invalid float value: 'soon'"),
        (["explode"], "argument COMMAND: invalid choice: 'explode'"),
        (["gateway"], "give --nats URL (repeatable for a cluster), or --demo for a local one"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_errors_a_user_can_make_are_one_line_and_exit_2(
    args: list[str], message: str, busy_port: int, tmp_path: Path
) -> None:
    replace = {"BUSY": str(busy_port), "MISSING": str(tmp_path / "missing.jsonl")}
    args = [replace.get(arg, arg) for arg in args]
    for placeholder, value in replace.items():
        message = message.replace(placeholder, value)
    result = _rxinvest(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("rxinvest: ")
    assert message in result.stderr
    assert result.stdout == ""


def test_gateway_demo_serves_a_consumer_with_one_command() -> None:
    """`rxinvest gateway --demo` starts nats-server, the simulator and a gateway, and says where to
    connect; a consumer connecting there gets trades."""
    pytest.importorskip("nats")
    from reactivex import operators as ops

    from rxinvest import bus

    process = subprocess.Popen(
        [sys.executable, "-m", "rxinvest", "gateway", "--demo", "--duration", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first, second = process.stdout.readline(), process.stdout.readline()
        match = re.search(r"rxinvest\.bus\.connect\('(nats://127\.0\.0\.1:\d+)'\)", second)
        assert first.startswith("rxinvest gateway ") and match, (first, second)
        with bus.connect(match.group(1)) as consumer:
            trade = consumer.market_data.trades("SBER_TQBR").pipe(ops.take(1), ops.timeout(20.0)).run()
        assert isinstance(trade, m.Trade) and trade.ticker in ("", "SBER")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()  # type: ignore[union-attr]


def test_decode_help_says_what_its_input_is() -> None:
    result = _rxinvest("decode", "--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "one frame per line" in text
    assert "- for stdin" in text
    for stream in Stream:
        assert stream.value in text


def test_decode_reports_each_line_that_is_not_a_json_object() -> None:
    lines = ['{"ping": {}}', "[1, 2]", "not json", "42", '{"nothing": {}}', '"text"']
    result = _rxinvest("decode", "--stream", "MarketDataStream", "-", stdin="\n".join(lines) + "\n")
    errors = result.stderr.splitlines()
    assert result.returncode == 1
    assert result.stdout.startswith("Ping(")
    assert [e.split(":", 1)[0] for e in errors] == ["line 2", "line 3", "line 4", "line 5", "line 6"]
    for number in (2, 3, 4, 6):
        assert f"line {number}: not a JSON object (one frame per line expected)" in result.stderr
    assert "line 5: MarketDataStream: no MarketDataStream payload key" in result.stderr


# --- the demo's view fits 80x24 -------------------------------------------------------------------


def _rendered(renderable: object) -> list[str]:
    console = Console(width=COLUMNS, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text().splitlines()


def _fits(lines: list[str], rows: int = ROWS) -> None:
    assert len(lines) <= rows, "\n".join(lines)
    assert max(map(cell_len, lines)) <= COLUMNS, "\n".join(lines)


def _full_view(tickers: list[str], price: Decimal, orders: int, error: str) -> _View:
    """A view that got everything the demo subscribes to, and more orders and positions than shown."""
    view = _View()
    now = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
    for n, ticker in enumerate(tickers):
        uid = f"uid-{n}"
        view.take(m.LastPrice(price=price, ticker=ticker, instrument_uid=uid, time=now))
        levels = tuple(m.Order(price=price + i, quantity=10**6) for i in range(3))
        view.take(m.OrderBook(depth=3, bids=levels, asks=levels, instrument_uid=uid, ticker=ticker))
        view.take(m.Candle(open=price, high=price, low=price, close=price, volume=10**9, instrument_uid=uid))
        view.take(m.TradingStatus(
            trading_status=m.SecurityTradingStatus.SECURITY_TRADING_STATUS_NOT_AVAILABLE_FOR_TRADING,
            instrument_uid=uid,
        ))  # fmt: skip
        view.take(m.PositionData(
            securities=(m.PositionsSecurities(instrument_uid=uid, ticker=ticker, balance=10**6, blocked=7),),
            money=(m.PositionsMoney(available_value=m.Money(amount=price * 1000, currency="rub")),),
        ))  # fmt: skip
    for n in range(orders):
        view.take(m.OrderState(
            order_id=f"order-{n:040d}",
            ticker=tickers[n % len(tickers)],
            direction=m.OrderDirection.ORDER_DIRECTION_SELL,
            execution_report_status=m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_PARTIALLYFILL,
            lots_executed=10**5,
            lots_requested=10**6,
            order_price=m.Money(amount=price, currency="rub"),
        ))  # fmt: skip
    if error:
        view.fail("books")(RuntimeError(error))
    return view


def test_the_demo_view_and_summary_fit_80_by_24_with_everything_shown() -> None:
    tickers = [i.split("_")[0] for i in INSTRUMENTS]
    view = _full_view(tickers, Decimal("123456.789"), orders=12, error="the server said\nno " * 20)
    headline = "rxinvest demo · simulator ws://127.0.0.1:65535/ws/"
    lines = _rendered(view.render(headline, 19.6, 3))
    _fits(lines)
    text = "\n".join(lines)
    for ticker in tickers:  # every instrument the demo subscribes to has its row
        assert re.search(rf"^{ticker} ", text, re.MULTILINE), ticker
    assert "order-00000000000000000000000000000000000011"[:8] in text  # the latest order
    assert "20 s left" in text
    assert "reconnects: 3" in text
    _fits(_rendered(view.summary(20.0)), rows=ROWS - 1)  # after a blank line


_TICKERS = st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1, max_size=16)


@given(
    tickers=st.lists(_TICKERS, max_size=20, unique=True),
    price=st.decimals(min_value=Decimal("0.000000001"), max_value=Decimal(10**12), places=9),
    orders=st.integers(0, 30),
    error=st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), max_size=300),
)
def test_the_demo_view_fits_whatever_arrives(
    tickers: list[str], price: Decimal, orders: int, error: str
) -> None:
    view = _full_view(tickers or ["X"], price, orders, error)
    _fits(_rendered(view.render("rxinvest demo · " + "x" * 100, 1e9, 10**6)))
    _fits(_rendered(view.summary(1e9)), rows=ROWS - 1)


def test_record_writes_the_simulator_streams_with_a_progress_line(tmp_path: Path) -> None:
    from rxinvest.replay import Frame, Mark, read

    path = tmp_path / "cli.jsonl.zst"
    result = _rxinvest(
        "record", "--duration", "1.5", "--streams", "trades,order_books,PositionsStream", str(path)
    )
    assert result.returncode == 0, result.stderr
    assert path.read_bytes().startswith(b"\x28\xb5\x2f\xfd")  # zstd, the default
    assert re.search(r"recording: [\d,]+ frames, [\d.,]+ kB, [\d,]+ frames/s in ", result.stderr)
    records = list(read(path))
    assert {r.stream for r in records if isinstance(r, Frame)} == {"MarketDataStream", "PositionsStream"}
    assert isinstance(records[-1], Mark) and records[-1].name == "end"


def test_record_refuses_an_unknown_stream() -> None:
    result = _rxinvest("record", "--streams", "gossip", "x.gz")
    assert result.returncode == 2 and "unknown streams ['gossip']" in result.stderr


def test_replay_summarises_a_recording_and_checks_it_against_its_digest(tmp_path: Path) -> None:
    import gzip
    import json

    path = tmp_path / "cli.jsonl.gz"
    result = _rxinvest("record", "--duration", "1.5", "--streams", "trades,order_books", str(path))
    assert result.returncode == 0, result.stderr
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    received = sum(1 for line in lines if json.loads(line).get("d") == "in")
    trades = sum(1 for line in lines if b'"j":{"trade"' in line)

    summary = _rxinvest("replay", str(path))
    assert summary.returncode == 0, summary.stderr
    assert f"MarketDataStream: 1 connection, {received:,} frames received" in summary.stdout
    assert f"Trade {trades:,}" in summary.stdout and "ends cleanly; digest stored" in summary.stdout
    checked = _rxinvest("replay", "--check", str(path))
    assert checked.returncode == 0 and "match the digest stored at record time" in checked.stdout

    # one trade's quantity changed after the fact: the typed events no longer match
    index = next(i for i, line in enumerate(lines) if b'"j":{"trade"' in line)
    more = lambda q: b'"quantity":"%d"' % (int(q[1]) + 1)  # noqa: E731
    lines[index] = re.sub(rb'"quantity":"(\d+)"', more, lines[index], count=1)
    path.write_bytes(gzip.compress(b"".join(lines)))
    tampered = _rxinvest("replay", "--check", str(path))
    assert (
        tampered.returncode == 1 and "differ from the recorded digest in MarketDataStream" in tampered.stderr
    )

    missing = _rxinvest("replay", str(tmp_path / "none.gz"))
    assert missing.returncode == 2 and missing.stderr.startswith("rxinvest: cannot read")
