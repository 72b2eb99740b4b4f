"""The line format and the reader, without sockets: round trips (hypothesis), corrupt and cut files."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest.errors import CorruptRecordingError, RecordingError
from rxinvest.replay import Frame, Header, Mark, Truncated, decode_line, encode_line, read
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


def _file(tmp_path: Path, lines: list[bytes], *, finish: bool = True) -> Path:
    path = tmp_path / "r.jsonl.gz"
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    data = compressor.compress(b"".join(lines))
    data += compressor.flush(zlib.Z_FINISH if finish else zlib.Z_SYNC_FLUSH)
    path.write_bytes(data)
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


@pytest.mark.parametrize(
    "bad", ['{"t": 1,\n', "not json\n", '{"t":1,"c":1,"s":"X","d":"sideways","f":""}\n', "[]\n"]
)
def test_a_corrupt_line_is_reported_with_its_number_not_taken_for_the_end(tmp_path: Path, bad: str) -> None:
    lines = _lines(10)
    lines[4] = bad.encode()  # line 5
    seen = []
    records = read(_file(tmp_path, lines))
    with pytest.raises(CorruptRecordingError) as caught:
        seen.extend(records)
    assert caught.value.line == 5 and "line 5" in str(caught.value)
    assert len(seen) == 4 and not any(isinstance(r, Truncated) for r in seen)


def test_damaged_compressed_data_is_corruption_with_a_line_number(tmp_path: Path) -> None:
    path = _file(tmp_path, _lines(2000))
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordingError) as caught:
        list(read(path))
    assert caught.value.line >= 1


def test_a_file_cut_short_ends_with_truncated_after_every_flushed_line(tmp_path: Path) -> None:
    path = _file(tmp_path, _lines(50), finish=False)  # sync-flushed, never finished: a killed recorder
    records = list(read(path))
    assert isinstance(records[-1], Truncated) and records[-1].lines == 50
    assert len(records) == 51
    # cut inside a line too: still no error, the partial line is dropped and said so
    data = path.read_bytes()
    whole = zlib.decompressobj(31).decompress(data)
    cut = _file(tmp_path, [whole[: len(whole) - 10]], finish=False)
    records = list(read(cut))
    assert isinstance(records[-1], Truncated) and "stops short" in records[-1].reason
    assert records[-1].lines == 49


def test_a_clean_file_has_no_truncated_record_and_gzip_reads_it(tmp_path: Path) -> None:
    path = _file(tmp_path, _lines(5))
    assert not any(isinstance(r, Truncated) for r in read(path))
    assert gzip.decompress(path.read_bytes()).count(b"\n") == 5


def test_what_is_not_a_recording_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(CorruptRecordingError):
        list(read(empty))
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
