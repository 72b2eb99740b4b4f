"""The line format and the reader, without sockets: round trips (hypothesis), corrupt and cut files."""

from __future__ import annotations

import gzip
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from rxinvest.errors import CorruptRecordingError, RecordingError
from rxinvest.replay import Frame, Header, Mark, Recorder, Truncated, decode_line, encode_line, read
from rxinvest.replay.format import RECEIVED_VERBATIM

ns = st.integers(min_value=0, max_value=2**63 - 1)
names = st.text(max_size=20)
frames = st.builds(
    lambda t, c, s, sent, data, r: Frame(
        time_ns=t, connection=c, stream=s, sent=sent, data=data, received_ns=None if sent else r
    ),
    ns,
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["MarketDataStream", "OrderStateStream", "PositionsStream"]),
    st.booleans(),
    st.binary(max_size=300) | st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogateescape")),
    ns,
)
details = st.dictionaries(
    names,
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | names,
    max_size=5,
)
marks = st.builds(
    lambda t, c, s, n, d: Mark(time_ns=t, connection=c, stream=s, name=n, detail=d),
    ns,
    st.integers(min_value=0, max_value=10**6),
    names,
    names,
    details,
)
headers = st.builds(lambda t, d, v: Header(time_ns=t, dialect=d, version=v), ns, names, names)


@given(frames | marks | headers)
def test_a_line_decodes_to_the_record_it_encodes(record: Frame | Mark | Header) -> None:
    line = encode_line(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one line, whatever the frame holds
    assert decode_line(line, 1) == record
    assert decode_line(line.decode("utf-8", "surrogateescape"), 1) == record  # a str line too


@given(st.binary(max_size=200))
def test_any_bytes_of_a_frame_come_back_exactly(data: bytes) -> None:
    frame = Frame(time_ns=1, connection=1, stream="MarketDataStream", sent=False, data=data, received_ns=2)
    decoded = decode_line(encode_line(frame), 7)
    assert isinstance(decoded, Frame) and decoded.data == data


@pytest.fixture(params=["gzip", "zstd"])
def compression(request: pytest.FixtureRequest) -> str:
    """Each reader test runs on both compressions a recording may have."""
    return str(request.param)


def _compress(compression: str, data: bytes, *, finish: bool) -> bytes:
    """``data`` compressed as a recorder writes it, finished or only synced (a killed recorder),
    by zlib or zstandard directly: not by the code under test."""
    if compression == "gzip":
        z = zlib.compressobj(1, zlib.DEFLATED, 31)
        return z.compress(data) + z.flush(zlib.Z_FINISH if finish else zlib.Z_SYNC_FLUSH)
    zc = zstandard.ZstdCompressor(level=1).compressobj()
    end = zstandard.COMPRESSOBJ_FLUSH_FINISH if finish else zstandard.COMPRESSOBJ_FLUSH_BLOCK
    return zc.compress(data) + zc.flush(end)


def _decompress(data: bytes) -> bytes:
    if data.startswith(b"\x1f\x8b"):
        return zlib.decompressobj(31).decompress(data)
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def _file(tmp_path: Path, lines: list[bytes], *, finish: bool = True, compression: str = "gzip") -> Path:
    path = tmp_path / f"r.jsonl.{compression}"  # a name that says nothing: the reader must not care
    path.write_bytes(_compress(compression, b"".join(lines), finish=finish))
    return path


def _lines(count: int) -> list[bytes]:
    header = encode_line(Header(time_ns=0, dialect="json"))
    body = [
        encode_line(
            Frame(time_ns=i, connection=1, stream="MarketDataStream", sent=False, data=b"{}", received_ns=i)
        )
        for i in range(1, count)
    ]
    return [header, *body]


_HOSTILE = [
    '{"t": 1,\n',
    "not json\n",
    '{"t":1,"c":1,"s":"X","d":"sideways","f":""}\n',
    "[]\n",
    # Values a reader would turn into times or counts, out of any range: typed errors, not
    # ValueError (Python's digit limit) or OverflowError from a datetime later on.
    '{"t":' + "9" * 5000 + ',"c":1,"s":"MarketDataStream","d":"in","r":1,"j":{}}\n',
    '{"t":1,"c":1,"s":"MarketDataStream","d":"in","r":' + "9" * 40 + ',"j":{}}\n',
    '{"t":-5,"c":1,"s":"MarketDataStream","d":"in","r":1,"f":"{}"}\n',
    '{"t":1,"c":1,"s":"","m":"connected","v":{"r":' + "9" * 30 + "}}\n",
    '{"t":1,"c":1,"s":"","m":"loss","v":{"dropped":"many"}}\n',
    '{"t":1,"c":1,"s":"","m":"loss","v":{"dropped":1e999}}\n',
    '{"t":1,"c":1,"s":"NoSuchStream","d":"in","r":1,"j":{}}\n',
    '{"t":1,"c":1,"s":"X","f":"' + "[" * 100_000 + '"}\n',
    '{"t":1,"v":' + "[" * 100_000 + "]" * 100_000 + "}\n",
]


@pytest.mark.parametrize("bad", _HOSTILE, ids=range(len(_HOSTILE)))
def test_a_corrupt_line_is_reported_with_its_number_not_taken_for_the_end(
    tmp_path: Path, bad: str, compression: str
) -> None:
    lines = _lines(10)
    lines[4] = bad.encode()  # line 5
    seen = []
    records = read(_file(tmp_path, lines, compression=compression))
    with pytest.raises(CorruptRecordingError) as caught:
        seen.extend(records)
    assert caught.value.line == 5 and "line 5" in str(caught.value)
    assert len(seen) == 4 and not any(isinstance(r, Truncated) for r in seen)


def test_damaged_compressed_data_is_corruption_with_a_line_number(tmp_path: Path, compression: str) -> None:
    path = _file(tmp_path, _lines(2000), compression=compression)
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordingError) as caught:
        list(read(path))
    assert caught.value.line >= 1


def test_a_file_cut_short_ends_with_truncated_after_every_flushed_line(
    tmp_path: Path, compression: str
) -> None:
    # sync-flushed, never finished: a killed recorder
    path = _file(tmp_path, _lines(50), finish=False, compression=compression)
    records = list(read(path))
    assert isinstance(records[-1], Truncated) and records[-1].lines == 50
    assert len(records) == 51 and "stops short" in records[-1].reason
    # cut inside a line too: still no error, the partial line is dropped and said so
    whole = _decompress(path.read_bytes())
    cut = _file(tmp_path, [whole[: len(whole) - 10]], finish=False, compression=compression)
    records = list(read(cut))
    assert isinstance(records[-1], Truncated) and "stops short" in records[-1].reason
    assert records[-1].lines == 49


def test_a_clean_file_has_no_truncated_record_and_gzip_reads_it(tmp_path: Path) -> None:
    path = _file(tmp_path, _lines(5))
    assert not any(isinstance(r, Truncated) for r in read(path))
    assert gzip.decompress(path.read_bytes()).count(b"\n") == 5


def test_a_clean_zstd_file_has_no_truncated_record(tmp_path: Path) -> None:
    path = _file(tmp_path, _lines(5), compression="zstd")
    assert [type(r) for r in read(path)] == [Header, Frame, Frame, Frame, Frame]


def test_concatenated_streams_are_read_on(tmp_path: Path, compression: str) -> None:
    """Two gzip members (or zstd frames) one after the other are one file, as zcat and zstdcat
    read them: the lines of the second are not taken for garbage after the end."""
    lines = _lines(6)
    path = tmp_path / "two"
    first = _compress(compression, b"".join(lines[:3]), finish=True)
    path.write_bytes(first + _compress(compression, b"".join(lines[3:]), finish=True))
    records = list(read(path))
    assert len(records) == 6 and not any(isinstance(r, Truncated) for r in records)


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("s.jsonl.gz", None, "gzip"),
        ("S.JSONL.GZ", None, "gzip"),
        ("s.jsonl.zst", None, "zstd"),
        ("s.jsonl", None, "zstd"),
        ("s.gz.bak", None, "zstd"),
        ("s.jsonl.gz", "zstd", "zstd"),
        ("s.zst", "gzip", "gzip"),
    ],
)
def test_the_compression_written_is_the_one_given_else_the_names(
    tmp_path: Path, name: str, given: str | None, expected: str
) -> None:
    recorder = Recorder(tmp_path / name, compression=given, digest=False).start()
    recorder.received(1, "MarketDataStream", b'{"n":1}', datetime.now(UTC))
    recorder.close()
    magic = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}[expected]
    assert recorder.compression == expected and (tmp_path / name).read_bytes().startswith(magic)
    assert [r.data for r in read(tmp_path / name) if isinstance(r, Frame)] == [b'{"n":1}']


def test_an_unknown_compression_is_refused_at_the_call(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="compression must be one of"):
        Recorder(tmp_path / "x.lz4", compression="lz4")
    assert not (tmp_path / "x.lz4").exists()


def test_what_is_not_a_recording_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(CorruptRecordingError, match="empty"):
        list(read(empty))
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(b"".join(_lines(3)))  # uncompressed: a clear error, not a zlib one
    with pytest.raises(CorruptRecordingError, match="neither gzip nor zstd") as caught:
        list(read(plain))
    assert caught.value.line == 1
    headless = _file(tmp_path, _lines(3)[1:])
    with pytest.raises(CorruptRecordingError, match="no header"):
        list(read(headless))
    with pytest.raises(RecordingError):
        list(read(tmp_path / "missing"))


ascii_but_newline = st.characters(max_codepoint=127, exclude_characters="\n")
received_verbatim = st.builds(
    lambda t, c, s, data, r: Frame(time_ns=t, connection=c, stream=s, sent=False, data=data, received_ns=r),
    ns,
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["MarketDataStream", "OrderStateStream", "PositionsStream"]),
    st.text(ascii_but_newline, min_size=1, max_size=100).map(str.encode),
    ns,
)


# Built, not filtered: a filter of the general frames threw away too many (a flaky health check).
@given(received_verbatim)
def test_the_recorders_head_of_a_verbatim_frame_is_the_one_encode_frame_writes(frame: Frame) -> None:
    head = RECEIVED_VERBATIM % (frame.time_ns, frame.connection, frame.stream.encode(), frame.received_ns)
    assert head + frame.data + b"}\n" == encode_line(frame)


def test_a_line_longer_than_the_limit_is_an_error_before_it_is_held_whole(
    tmp_path: Path, compression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line without end (a damaged or hostile file) is refused once it passes ``MAX_LINE``; one
    within it that the file cuts short is a ``Truncated`` saying how long it was."""
    import importlib

    read_module = importlib.import_module("rxinvest.replay.read")  # the package's ``read`` is the function
    monkeypatch.setattr(read_module, "MAX_LINE", 100_000)
    endless = [*_lines(3), b"x" * 300_000]  # many chunks of the reader, none with a newline
    with pytest.raises(CorruptRecordingError, match="longer than 100000 bytes") as caught:
        list(read(_file(tmp_path, endless, compression=compression)))
    assert caught.value.line == 4
    cut = [*_lines(3), b"y" * 90_000]
    records = list(read(_file(tmp_path, cut, finish=False, compression=compression)))
    assert isinstance(records[-1], Truncated) and "90000 bytes" in records[-1].reason
