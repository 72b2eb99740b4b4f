"""Recording: a simulator session on 127.0.0.1 recorded through the client, losses, kills, secrets.

Every file a test writes is scanned for the token (raw and decompressed) when the test ends
(the ``secrets`` fixture of ``conftest.py``).
"""

from __future__ import annotations

import gzip
import importlib
import os
import subprocess
import sys
import textwrap
import time
import types
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from reactivex.scheduler import ImmediateScheduler

import rxinvest
from rxinvest.errors import CorruptRecordingError, RecordingError
from rxinvest.replay import Frame, Header, Mark, MarkName, Recorder, Truncated, read
from tests.replay.cuts import cut_market_data

record_module = importlib.import_module("rxinvest.replay.record")


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_session_is_recorded_both_ways_with_times_and_marks(tmp_path: Path, secrets: list[str]) -> None:
    path = tmp_path / "session.jsonl.zst"
    counts: Counter[str] = Counter()
    with rxinvest.connect(record=path, scheduler=ImmediateScheduler()) as client:
        secrets.append(client.sim.token)
        ids = [i.instrument_id for i in client.sim.instruments[:3]]
        account = client.sim.accounts[0]
        client.market_data.trades(ids).with_markers().subscribe(lambda e: counts.update([type(e).__name__]))
        client.market_data.order_books(ids, depth=10, conflate=False).subscribe(
            lambda e: counts.update(["book"])
        )
        client.orders.order_states([account]).subscribe(lambda e: counts.update(["order"]))
        client.operations.positions([account]).subscribe(lambda e: counts.update(["position"]))
        cut_market_data(client.sim, after=40)  # a reconnect and a gap follow
        assert wait_until(lambda: counts["Gap"] >= 1 and counts["Trade"] >= 20)
        time.sleep(0.3)
    records = list(read(path))
    assert isinstance(records[0], Header) and records[0].dialect == "json"
    assert not any(isinstance(r, Truncated) for r in records)
    times = [r.time_ns for r in records if not isinstance(r, Truncated)]
    assert times == sorted(times)
    streams = {r.stream for r in records if isinstance(r, Frame)}
    assert streams == {"MarketDataStream", "OrderStateStream", "PositionsStream"}
    for stream in streams:
        sent = [r for r in records if isinstance(r, Frame) and r.stream == stream and r.sent]
        received = [r for r in records if isinstance(r, Frame) and r.stream == stream and not r.sent]
        assert sent and received, stream
        assert all(r.received_ns is not None and r.received_ns <= r.time_ns + 10**9 for r in received)
    marks = Counter((r.stream, r.name) for r in records if isinstance(r, Mark))
    assert marks["MarketDataStream", MarkName.CONNECTED] == 2
    assert marks["MarketDataStream", MarkName.RECONNECT] == 1
    assert marks["MarketDataStream", "gap"] >= 1
    assert marks["MarketDataStream", MarkName.CLOSED] == 1
    assert marks["OrderStateStream", MarkName.CONNECTED] == 1
    assert isinstance(records[-1], Mark) and records[-1].name == MarkName.END
    assert records[-1].detail["lost"] == 0
    gap = next(r for r in records if isinstance(r, Mark) and r.name == "gap")
    assert gap.detail["cause"] == "reconnect" and datetime.fromisoformat(str(gap.detail["since"])).tzinfo


@pytest.mark.parametrize("suffix", [".zst", ".gz"])
def test_a_clean_shutdown_loses_no_frame(tmp_path: Path, secrets: list[str], suffix: str) -> None:
    path = tmp_path / f"clean.jsonl{suffix}"
    trades, books = [0], [0]
    with rxinvest.connect(record=path, scheduler=ImmediateScheduler(), sim_options={"speed": 4.0}) as client:
        secrets.append(client.sim.token)
        ids = [i.instrument_id for i in client.sim.instruments[:4]]
        client.market_data.trades(ids).subscribe(lambda _: trades.__setitem__(0, trades[0] + 1))
        client.market_data.order_books(ids, depth=20, conflate=False).subscribe(
            lambda _: books.__setitem__(0, books[0] + 1)
        )
        assert wait_until(lambda: trades[0] >= 50 and books[0] >= 50)
        # closed while frames keep coming
    received = [r for r in read(path) if isinstance(r, Frame) and not r.sent]
    recorded_trades = sum(1 for r in received if r.data.startswith(b'{"trade"'))
    recorded_books = sum(1 for r in received if r.data.startswith(b'{"orderbook"'))
    assert (recorded_trades, recorded_books) == (trades[0], books[0])
    assert client.recorder.lost == 0 and not client.recorder.running


CHILD = textwrap.dedent(
    """
    import sys, time
    import rxinvest
    with rxinvest.connect(record=sys.argv[1], sim_options={"speed": 4.0}) as client:
        print("token", client.sim.token, flush=True)
        ids = [i.instrument_id for i in client.sim.instruments[:4]]
        client.market_data.trades(ids).subscribe(lambda _: None)
        client.market_data.order_books(ids, depth=20).subscribe(lambda _: None)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            print("frames", time.monotonic(), client.recorder.frames, flush=True)
            time.sleep(0.05)
    """
)


@pytest.mark.parametrize("suffix", [".zst", ".gz"])
def test_after_sigkill_at_most_one_flush_interval_is_lost(
    tmp_path: Path, secrets: list[str], suffix: str
) -> None:
    path = tmp_path / f"killed.jsonl{suffix}"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(Path(rxinvest.__file__).parent.parent)}
    env.pop("INVEST_TOKEN", None)
    child = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    reports: list[tuple[float, int]] = []
    try:
        assert child.stdout is not None
        secrets.append(child.stdout.readline().split()[1])
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            line = child.stdout.readline()
            if not line:
                break
            _, at, frames = line.split()
            reports.append((float(at), int(frames)))
        killed_at = time.monotonic()
        child.kill()
    finally:
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    assert reports and reports[-1][1] > 50, "the child recorded"
    records = list(read(path))
    assert isinstance(records[-1], Truncated)
    recorded = sum(1 for r in records if isinstance(r, Frame))
    # what the child had counted one flush interval (0.5 s) plus a writer tick and slack before the kill
    # is all in the file
    before = [frames for at, frames in reports if at <= killed_at - 1.0]
    assert before and recorded >= before[-1]
    assert recorded <= reports[-1][1] + 1000


def test_an_overflowing_queue_is_counted_and_marked_in_band(tmp_path: Path, secrets: list[str]) -> None:
    path = tmp_path / "overflow.jsonl.gz"
    secrets.append("s3cr3t-token")
    recorder = Recorder(path, queue_limit=10, secrets=secrets).start()
    now = datetime.now(UTC)
    for i in range(1000):  # far faster than the writer's tick
        recorder.received(1, "MarketDataStream", b'{"n":%d}' % i, now)
    recorder.sent(1, "MarketDataStream", ["{}", "{}", "{}"])  # three lines dropped as one item
    for i in range(5):
        time.sleep(0.2)  # drained: these fit again, after a loss mark
        recorder.received(1, "MarketDataStream", b'{"late":%d}' % i, now)
    recorder.close()
    records = list(read(path))
    frames = [r for r in records if isinstance(r, Frame)]
    losses = [r for r in records if isinstance(r, Mark) and r.name == MarkName.LOSS]
    assert losses and sum(int(str(m.detail["dropped"])) for m in losses) == recorder.lost > 0
    assert len(frames) + recorder.lost == 1008  # lines, not items: each frame sent is a line
    assert recorder.frames == len(frames)  # what was queued, not what was dropped
    first_loss = records.index(losses[0])
    assert isinstance(records[first_loss - 1], Frame) and records[first_loss - 1].data == b'{"n":9}'
    assert records[-1].name == MarkName.END and records[-1].detail["lost"] == recorder.lost  # type: ignore[union-attr]


def test_the_writer_redacts_secrets_it_was_given(tmp_path: Path, secrets: list[str]) -> None:
    path = tmp_path / "redacted.jsonl.gz"
    secrets.append("t.SeCrEt_123")
    with Recorder(path, secrets=secrets).start() as recorder:
        recorder.received(1, "MarketDataStream", b'{"echo":"t.SeCrEt_123"}', datetime.now(UTC))
        recorder.sent(1, "MarketDataStream", ['{"x":"t.SeCrEt_123"}'])
    frames = [r for r in read(path) if isinstance(r, Frame)]
    assert [f.data for f in frames] == [b'{"echo":"***"}', b'{"x":"***"}'] and recorder.redacted == 2
    # header, two frames, the digest, the end
    assert gzip.decompress(path.read_bytes()).count(b"\n") == 5


def test_a_file_that_cannot_be_written_is_a_recording_error(tmp_path: Path, secrets: list[str]) -> None:
    secrets.append("unused")
    with pytest.raises(RecordingError):
        rxinvest.connect(record=tmp_path / "no" / "such" / "dir.gz")


def test_the_writer_flushes_on_time_under_a_load_it_never_catches_up_with(
    tmp_path: Path, secrets: list[str]
) -> None:
    secrets.append("unused")
    # No digest and a bounded queue: the test is about flushing, and the file stays small.
    recorder = Recorder(tmp_path / "busy.jsonl.gz", flush_interval=0.2, queue_limit=50_000, digest=False)
    syncs: list[float] = []
    sync = recorder._sync

    def counted() -> None:
        syncs.append(time.monotonic())
        sync()

    recorder._sync = counted  # type: ignore[method-assign]
    recorder.start()
    began = time.monotonic()
    frame, now = b'{"trade":{"figi":"X","quantity":"1"}}', datetime.now(UTC)
    while time.monotonic() - began < 1.5:  # the queue never empties (it overflows: counted losses)
        for _ in range(500):
            recorder.received(1, "MarketDataStream", frame, now)
    busy = [t for t in syncs if began < t < began + 1.5]
    recorder.close()
    assert len(busy) >= 3, f"{len(busy)} flushes in 1.5 s of load with flush_interval=0.2"


def test_a_file_without_a_whole_header_line_is_corrupt_not_a_crash(
    tmp_path: Path, secrets: list[str]
) -> None:
    secrets.append("unused")
    empty, cut = tmp_path / "empty.gz", tmp_path / "cut.gz"
    empty.write_bytes(gzip.compress(b""))
    cut.write_bytes(gzip.compress(b'{"rxinvest_recording":2,"t":1,'))
    for path in (empty, cut):
        with pytest.raises(CorruptRecordingError) as caught:
            list(read(path))
        assert caught.value.line == 1 and "header" in str(caught.value)
        result = subprocess.run(
            [sys.executable, "-m", "rxinvest", "replay", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (
            result.returncode == 2
            and result.stderr.startswith("rxinvest: ")
            and "Traceback" not in result.stderr
        )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_header_that_cannot_be_written_is_a_recording_error_and_closes_the_file(secrets: list[str]) -> None:
    secrets.append("unused")
    recorder = Recorder("/dev/full")
    with pytest.raises(RecordingError, match="cannot write"):
        recorder.start()
    assert recorder._file.closed


def test_stamps_queued_out_of_order_are_written_in_order(
    tmp_path: Path, secrets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Received frames are stamped without a lock, so two reader threads may queue them a few µs
    out of order: the writer gives each line the later of its stamp and the line before's."""
    secrets.append("unused")
    base = time.time_ns() + 10**9  # after the header's time
    offsets = [5, 3, 4, 9, 1, 12]
    stamps = iter([base + o for o in offsets])
    recorder = Recorder(tmp_path / "order.jsonl.zst", digest=False).start()
    clock = types.SimpleNamespace(time_ns=lambda: next(stamps), monotonic=time.monotonic)
    monkeypatch.setattr(record_module, "time", clock)  # the recorder's clock alone
    now = datetime.now(UTC)
    for i in range(len(offsets)):
        recorder.received(1, "MarketDataStream", b'{"n":%d}' % i, now)
    monkeypatch.undo()
    recorder.close()
    frames = [r for r in read(tmp_path / "order.jsonl.zst") if isinstance(r, Frame)]
    assert [f.data for f in frames] == [b'{"n":%d}' % i for i in range(len(offsets))]  # queue order
    assert [f.time_ns - base for f in frames] == [5, 5, 5, 9, 9, 12]
    assert recorder.frames == len(offsets)
