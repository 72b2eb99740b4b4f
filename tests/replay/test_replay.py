"""Replay: a simulator session recorded live over 127.0.0.1 and played back gives the same typed
events, markers included; time-based operators on the replay's clock give what they give on the
live timeline; a burst of frames with one timestamp plays completely.

The oracle for the time-based operators is independent of the replay: the events the live client
delivered, each stamped with the wall time it was delivered at, fed to the same operators under
reactivex's ``TestScheduler`` (:func:`rxinvest.testing.marbles.run_marbles`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
import reactivex
import zstandard
from reactivex.scheduler import ImmediateScheduler

import rxinvest
from rxinvest import ops
from rxinvest.derived import Bar, BookProblem, CheckStatus
from rxinvest.errors import ConfigurationError, CorruptRecordingError
from rxinvest.replay import Frame, Header, Mark, MarkName, encode_line, read
from rxinvest.replay.format import time_of
from rxinvest.testing.marbles import COMPLETED, EPOCH, run_marbles
from tests.replay.cuts import cut_market_data

# The simulator's market moves in steps of 100 ms: the timers are set between steps, so that a
# frame never arrives within the few milliseconds where the live delivery time and the recorded
# receive time could fall on two sides of a deadline.
BAR = timedelta(seconds=1)
GRACE = timedelta(milliseconds=250)
STALE = timedelta(milliseconds=250)
TIMEOUT = 0.45

Captured = list[tuple[datetime, Any]]


def digest(events: Iterable[Any]) -> str:
    """SHA-256 of a canonical encoding: each event's class and attrs ``repr`` (every field, in
    declaration order: Decimals, datetimes and enums exactly), one a line."""
    sha = hashlib.sha256()
    for event in events:
        sha.update(f"{type(event).__name__} {event!r}\n".encode())
    return sha.hexdigest()


def subscribe_all(client: rxinvest.streams.Client, ids: list[str], account: str) -> dict[str, Any]:
    """The four sources of the session, with markers (what operators need)."""
    return {
        "trades": client.market_data.trades(ids).with_markers(),
        "books": client.market_data.order_books(ids, depth=10, conflate=False).with_markers(),
        "orders": client.orders.order_states([account]).with_markers(),
        "positions": client.operations.positions([account]).with_markers(),
    }


def record_live(path: Path, secrets: list[str]) -> tuple[dict[str, Captured], list[str], str]:
    """A live session, recorded: trades, books, order states and positions of the simulator's
    traders for about 3 s, the market-data connection cut 40 frames after it is found (a reconnect
    and a gap: waited for), a transfer of securities (no fill explains it). Returns each source's
    events with the wall time each was delivered at, the instruments and the account."""
    captured: dict[str, Captured] = {}
    lock = threading.Lock()
    with rxinvest.connect(record=path, scheduler=ImmediateScheduler()) as client:
        secrets.append(client.sim.token)
        ids = [i.instrument_id for i in client.sim.instruments[:3]]
        account = client.sim.accounts[0]
        for name, source in subscribe_all(client, ids, account).items():
            events = captured.setdefault(name, [])

            def keep(event: Any, events: Captured = events) -> None:
                with lock:  # the sources' reader threads
                    events.append((datetime.now(UTC), event))

            source.subscribe(keep)
        cut_market_data(client.sim, after=40)
        began = time.monotonic()
        while not any(type(e).__name__ == "Gap" for _, e in list(captured["trades"])):  # the cut came
            assert time.monotonic() - began < 30, "the market-data connection was never cut"
            time.sleep(0.05)
        time.sleep(max(0.0, 1.5 - (time.monotonic() - began)))
        assert client.sim.transfer_securities(account, ids[0], 3)
        time.sleep(1.5)
    return captured, ids, account


def replay(
    path: Path, ids: list[str], account: str, **options: Any
) -> tuple[dict[str, list[Any]], dict[str, list[Any]], rxinvest.replay.ReplayStats]:
    """The recording played back to the same subscriptions, and to the time-based operators on the
    replay's clock."""
    events: dict[str, list[Any]] = {}
    outputs: dict[str, list[Any]] = {"bars": [], "health": [], "checks": []}
    with rxinvest.connect(replay=path, **options) as client:
        sources = subscribe_all(client, ids, account)
        for name, source in sources.items():
            source.subscribe(events.setdefault(name, []).append)
        clock = client.scheduler
        sources["trades"].pipe(ops.to_bars(BAR, grace=GRACE, scheduler=clock)).subscribe(
            outputs["bars"].append
        )
        sources["books"].pipe(ops.book_health(stale_after=STALE, scheduler=clock)).subscribe(
            outputs["health"].append
        )
        ops.reconcile_positions(
            sources["orders"], sources["positions"], timeout=TIMEOUT, scheduler=clock
        ).subscribe(outputs["checks"].append)
        stats = client.replay.run()
    return events, outputs, stats


def on_live_timeline(
    operator: Callable[..., reactivex.Observable[Any]], *lines: Captured, start: datetime, end: datetime
) -> list[Any]:
    """The oracle: ``operator`` under a TestScheduler, each event at the second it was delivered
    live, every source completed at ``end`` (as the replaying client's close completes them)."""
    seconds = lambda at: (at - start).total_seconds()  # noqa: E731
    timelines = [[(seconds(at), event) for at, event in line] + [(seconds(end), COMPLETED)] for line in lines]
    return run_marbles(operator, *timelines, until=seconds(end) + 60).items


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("live") / "session.jsonl.zst"  # the default compression
    tokens: list[str] = []
    captured, ids, account = record_live(path, tokens)
    assert path.read_bytes().startswith(b"\x28\xb5\x2f\xfd")
    assert tokens[0].encode() not in zstandard.ZstdDecompressor().decompressobj().decompress(
        path.read_bytes()
    )
    return path, captured, ids, account


def test_a_live_session_replays_to_the_identical_typed_events(session: Any) -> None:
    path, captured, ids, account = session
    events, _, stats = replay(path, ids, account)
    assert stats.mismatches == 0 and stats.skipped == 0 and stats.lost == 0 and not stats.truncated
    for name, live in captured.items():
        live_events = [event for _, event in live]
        first_difference = next(
            (pair for pair in zip(events[name], live_events, strict=False) if pair[0] != pair[1]), None
        )
        assert first_difference is None, (name, first_difference)
        assert len(events[name]) == len(live_events), name
        assert digest(events[name]) == digest(live_events), name
    kinds = {name: {type(e).__name__ for e in es} for name, es in events.items()}
    assert {"Subscribed", "Gap", "Trade"} <= kinds["trades"]  # the cut connection's gap is there
    assert "OrderState" in kinds["orders"] and "PositionData" in kinds["positions"]


def per_key(events: list[Any]) -> dict[Any, list[tuple[datetime, dict[str, Any]]]]:
    """Each key's events in order (an instrument's health; an account position's checks), each as
    its time and its other fields."""
    keyed: dict[Any, list[tuple[datetime, dict[str, Any]]]] = {}
    for event in events:
        fields = attrs.asdict(event, recurse=False)
        at = fields.pop("time")
        fields.pop("id", None)  # a digest of every field, the time included
        key = (fields.get("account_id"), fields["instrument_uid"], fields.get("currency"))
        keyed.setdefault(key, []).append((at, fields))
    return keyed


def assert_same_on_both_clocks(
    replayed: list[Any], oracle: list[Any], start: datetime, began: datetime
) -> None:
    """The same events per key, in the same order (across keys, events of one instant may come in
    either order), at the same times: an exchange time exactly, a scheduler's within 100 ms (the
    replay's clock reads the receive times recorded live, the oracle's the delivery times seen
    live, from microseconds to milliseconds later; virtual second 0 of the oracle is ``start``).
    What the replaying client made at subscription, before the recording's first frame
    (``began``), happened live at a moment the recording does not hold: its time is not compared."""
    mine, theirs = per_key(replayed), per_key(oracle)
    assert mine.keys() == theirs.keys()
    for key, events in mine.items():
        assert [f for _, f in events] == [f for _, f in theirs[key]], key
        for (at, _), (seen, _) in zip(events, theirs[key], strict=True):
            if seen.year > EPOCH.year:  # an exchange time, carried through
                assert at == seen
            elif at != began:
                assert abs(at - (seen - EPOCH + start)) < timedelta(milliseconds=100), key


def test_time_based_operators_on_the_replay_clock_give_what_the_live_timeline_gives(session: Any) -> None:
    path, captured, ids, account = session
    _, outputs, stats = replay(path, ids, account)
    start = min(at for line in captured.values() for at, _ in line)
    timeline = {"start": start, "end": stats.end}
    bars = on_live_timeline(ops.to_bars(BAR, grace=GRACE), captured["trades"], **timeline)
    health = on_live_timeline(ops.book_health(stale_after=STALE), captured["books"], **timeline)
    checks = on_live_timeline(
        lambda o, p: ops.reconcile_positions(o, p, timeout=TIMEOUT),
        captured["orders"],
        captured["positions"],
        **timeline,
    )
    # bars carry exchange times only: identical
    assert digest(outputs["bars"]) == digest(bars) and any(isinstance(b, Bar) for b in bars)
    # health and checks carry the scheduler's time
    assert any(BookProblem.STALE in h.problems for h in health)  # timers fired
    assert_same_on_both_clocks(outputs["health"], health, start, stats.start)
    assert_same_on_both_clocks(outputs["checks"], checks, start, stats.start)
    # the transfer is judged at its timeout: a timer's output, on both clocks
    assert [c.difference for c in checks if c.status is CheckStatus.UNEXPLAINED] == [Decimal(3)]


def test_a_replay_is_deterministic_and_can_be_cut_short(session: Any) -> None:
    path, _, ids, account = session
    first = replay(path, ids, account)
    again = replay(path, ids, account)
    assert {k: digest(v) for k, v in first[0].items()} == {k: digest(v) for k, v in again[0].items()}
    assert {k: digest(v) for k, v in first[1].items()} == {k: digest(v) for k, v in again[1].items()}
    with rxinvest.connect(replay=path) as client:
        trades: list[Any] = []
        client.market_data.trades(ids).subscribe(trades.append)
        until = first[2].start + (first[2].end - first[2].start) / 2
        stats = client.replay.run(until=until)
    assert stats.end == until and 0 < len(trades) < len(first[0]["trades"])
    assert all(t.time <= until for t in trades)


def test_subscriptions_that_differ_from_the_recording_are_counted_not_hidden(session: Any) -> None:
    path, _, ids, account = session
    with rxinvest.connect(replay=path) as client:
        client.market_data.trades(ids[:1]).subscribe(lambda _: None)  # fewer than recorded
        stats = client.replay.run()
    assert stats.mismatches >= 1
    assert stats.skipped > 0  # the account streams: nobody plays them
    with rxinvest.connect(replay=path) as client:
        for source in subscribe_all(client, ids, account).values():
            source.subscribe(lambda _: None)
        client.market_data.last_prices(ids).subscribe(lambda _: None)  # more than recorded
        stats = client.replay.run()
    assert stats.mismatches >= 1  # the request the recording never answered (once a connection)
    with rxinvest.connect(replay=path) as client:
        client.operations.portfolio([account]).subscribe(lambda _: None)  # a stream never recorded
        stats = client.replay.run()
    assert stats.mismatches == 1 and stats.frames == 0  # its request: sent, and nobody answered


def test_scaled_real_time_keeps_to_the_recorded_pace(session: Any) -> None:
    path, _, ids, account = session
    with rxinvest.connect(replay=path, speed=4.0) as client:
        subscribe_all(client, ids, account)["trades"].subscribe(lambda _: None)
        stats = client.replay.run()
    span = (stats.end - stats.start).total_seconds()
    assert span / 4.0 <= stats.seconds < span / 4.0 + 2.0
    assert stats.late_ms < 1000  # generous on a loaded CI machine: the benchmark measures the drift


def test_bad_options_are_refused_at_the_call(session: Any, tmp_path: Path) -> None:
    path = session[0]
    with pytest.raises(ConfigurationError, match="speed"):
        rxinvest.connect(replay=path, speed=0)
    with pytest.raises(ConfigurationError, match="target"):
        rxinvest.connect(replay=path, target="sim")
    with pytest.raises(ConfigurationError, match="replay"):
        rxinvest.connect(speed=2.0)
    with rxinvest.connect(replay=path) as client, pytest.raises(ConfigurationError, match="aware"):
        client.replay.run(until=datetime(2026, 11, 30))
    with rxinvest.connect(replay=path) as client:
        client.replay.run()
        with pytest.raises(ConfigurationError, match="once"):
            client.replay.run()


# --- a burst of frames with one timestamp ---------------------------------------------------------


def burst_recording(
    path: Path, template: list[Any], count: int, *, same_time: bool, step_ns: int = 1000
) -> None:
    """A recording of one market-data connection: the recorded subscription and its answer, then
    ``count`` trades (the template's first trade, quantities 1..count), received at one instant
    with one exchange time, or each ``step_ns`` (a microsecond) after the last."""
    header, connected, *answers, trade = template
    base = connected.time_ns + 1_000_000
    body = json.loads(trade.data)
    exchange = datetime.fromisoformat(body["trade"]["time"].replace("Z", "+00:00"))
    lines = [encode_line(header), encode_line(connected)]
    lines += [encode_line(r) for r in answers]
    for n in range(count):
        offset = 0 if same_time else n * step_ns
        body["trade"]["quantity"] = str(n + 1)
        body["trade"]["time"] = (exchange + timedelta(microseconds=offset / 1000)).isoformat()
        data = json.dumps(body).encode()
        at = base + offset
        lines.append(
            encode_line(
                Frame(time_ns=at, connection=1, stream=trade.stream, sent=False, data=data, received_ns=at)
            )
        )
    end = base + count * step_ns + 1_000_000
    lines.append(encode_line(Mark(time_ns=end, connection=0, stream="", name=MarkName.END)))
    with gzip.open(path, "wb") as file:
        file.writelines(lines)


@pytest.fixture(scope="module")
def burst_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], str]:
    """From a live recording of one instrument's trades: the header, the connected mark, the
    requests and the answer, and the first trade."""
    path = tmp_path_factory.mktemp("burst") / "one.jsonl.gz"
    with rxinvest.connect(record=path, scheduler=ImmediateScheduler()) as client:
        instrument = client.sim.instruments[0].instrument_id
        got = threading.Event()
        client.market_data.trades(instrument).subscribe(lambda _: got.set())
        assert got.wait(20)
    records = list(read(path))
    connected = next(r for r in records if isinstance(r, Mark) and r.name == MarkName.CONNECTED)
    frames = [r for r in records if isinstance(r, Frame)]
    trade = next(r for r in frames if r.data.startswith(b'{"trade"'))
    answer = next(r for r in frames if b"subscribeTradesResponse" in r.data)
    requests = [r for r in frames if r.sent and r.time_ns <= answer.time_ns]
    header = records[0]
    assert isinstance(header, Header)
    return [header, connected, *requests, answer, trade], instrument


def test_ten_thousand_frames_with_one_timestamp_play_completely(
    tmp_path: Path, burst_template: tuple[list[Any], str]
) -> None:
    template, instrument = burst_template
    results = {}
    for same_time in (True, False):
        path = tmp_path / f"burst-{same_time}.jsonl.gz"
        burst_recording(path, template, 10_000, same_time=same_time)
        trades: list[Any] = []
        bars: list[Any] = []
        with rxinvest.connect(replay=path) as client:
            source = client.market_data.trades(instrument)
            source.subscribe(trades.append)
            source.pipe(ops.tick_bars(1000)).subscribe(bars.append)
            stats = client.replay.run()
        assert stats.frames == 10_001  # the answer and the trades
        assert stats.mismatches == 0
        results[same_time] = (trades, bars)
    (trades, bars), (trades_apart, bars_apart) = results[True], results[False]
    assert [t.quantity for t in trades] == list(range(1, 10_001)) == [t.quantity for t in trades_apart]
    assert len({t.time for t in trades}) == 1 and len({t.time for t in trades_apart}) == 10_000
    without_times = lambda bar: (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trade_count)  # noqa: E731
    assert [without_times(b) for b in bars] == [without_times(b) for b in bars_apart]
    assert len(bars) == 10


def test_a_corrupt_line_is_reported_with_its_number(
    tmp_path: Path, burst_template: tuple[list[Any], str]
) -> None:
    template, instrument = burst_template
    path = tmp_path / "corrupt.jsonl.gz"
    burst_recording(path, template, 20, same_time=False)
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    lines[7] = b'{"t": not json'
    path.write_bytes(gzip.compress(b"\n".join(lines)))
    with rxinvest.connect(replay=path) as client:
        client.market_data.trades(instrument).subscribe(lambda _: None)
        with pytest.raises(CorruptRecordingError) as caught:
            client.replay.run()
    assert caught.value.line == 8


def test_a_request_the_recording_never_answered_is_a_mismatch(
    tmp_path: Path, burst_template: tuple[list[Any], str]
) -> None:
    template, instrument = burst_template
    path = tmp_path / "short.jsonl.gz"
    burst_recording(path, template, 10, same_time=False)
    with rxinvest.connect(replay=path) as client:
        client.market_data.trades(instrument).subscribe(lambda _: None)
        exact = client.replay.run()
    with rxinvest.connect(replay=path) as client:
        client.market_data.trades(instrument).subscribe(lambda _: None)
        client.market_data.last_prices(instrument).subscribe(lambda _: None)  # never recorded
        extra = client.replay.run()
    assert exact.mismatches == 0 and extra.mismatches == 1 and extra.sent == exact.sent + 1


def test_scaled_real_time_hands_each_frame_over_at_its_own_time(
    tmp_path: Path, burst_template: tuple[list[Any], str]
) -> None:
    """With ``speed``, a frame reaches its subscriber when its wall time comes, not after the sleep
    before the next record (one record late: the whole quiet spell late, after one)."""
    template, instrument = burst_template
    path = tmp_path / "spaced.jsonl.gz"
    step = 0.4  # seconds between two trades, recorded and (speed 1) replayed
    burst_recording(path, template, 4, same_time=False, step_ns=int(step * 1e9))
    trades = [r for r in read(path) if isinstance(r, Frame) and r.data.startswith(b'{"trade"')]
    arrived: list[float] = []
    with rxinvest.connect(replay=path, speed=1.0) as client:
        client.market_data.trades(instrument).subscribe(lambda _: arrived.append(time.monotonic()))
        start, began = client.scheduler.now, time.monotonic()
        client.replay.run()
    assert len(arrived) == 4
    due = [began + (time_of(t.received_ns) - start).total_seconds() for t in trades]  # type: ignore[arg-type]
    late = [arrived[n] - due[n] for n in range(4)]
    assert all(-0.05 < seconds < step / 2 for seconds in late), late
