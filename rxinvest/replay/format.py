"""The recording format: one JSON object per line, gzip-compressed; the records and their encoding.

Rules of this module (pure: no I/O, no clock):

* A line is one record. The first is the :class:`Header`; then, in the order the recorder saw
  them, :class:`Frame` lines (``"d": "in"`` received, ``"d": "out"`` sent) and :class:`Mark` lines
  (lifecycle, gaps, losses); a cleanly closed file ends with the mark ``end``.
* ``t`` is the recorder's clock in ns since the epoch, never decreasing from one line to the next.
  A received frame also carries ``r``: the receive time its transport stamped (what the client's
  session was given), in ns. ``c`` numbers the logical connections of the recording from 1; ``s`` is
  the stream's method name (:class:`~rxinvest.wire.Stream`).
* A frame's bytes are kept exactly. A frame that is UTF-8 without a line break (every frame a
  server sends: one JSON text) is written as it is, as the line's last member ``"j"``; the line is
  then JSON whenever the frame is, and reading takes the frame as the bytes between the member's
  key and the line's closing brace, without parsing it (so a malformed frame is recorded and read
  back as well). Any other frame is a JSON string, member ``"f"`` (a frame that is not valid UTF-8
  as an ASCII string of its escaped bytes). The file is UTF-8, one record a line. Format 1 files
  (every frame as ``"f"``) are read too.
* :func:`decode_line` raises :class:`~rxinvest.errors.CorruptRecordingError` with the line number for
  anything that is not a record of this format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import attrs

from rxinvest.errors import CorruptRecordingError
from rxinvest.wire import Stream, json_string, json_value

__all__ = [
    "FORMAT",
    "Frame",
    "Header",
    "Mark",
    "MarkName",
    "Record",
    "Truncated",
    "decode_line",
    "encode_frame",
    "encode_line",
    "encode_mark",
    "time_of",
]

#: The version of the line format, in the header's ``rxinvest_recording`` field.
FORMAT = 2
#: The formats this rxinvest reads.
READABLE_FORMATS = (1, 2)

#: Detail values a mark may carry.
Detail: TypeAlias = str | int | float | bool | None


class MarkName:
    """The names of marks (plain strings on the line)."""

    CONNECTED = "connected"  # a connection opened (``r``: when its transport said so)
    RECONNECT = "reconnect"  # it was lost and a new one follows (``error``, ``message``)
    DISCONNECTED = "disconnected"  # it was lost and not wanted any more
    CLOSED = "closed"  # the transport ended for good (``error``: ClientClosedError when by the client)
    GAP = "gap"  # the client marked a gap to its subscribers (the Gap's fields)
    LOSS = "loss"  # the recorder's queue overflowed: ``dropped`` lines are missing here
    DIGEST = "digest"  # the typed events' digest per stream, at close (see rxinvest.replay.digest)
    END = "end"  # the recorder closed cleanly (``frames``, ``lost``)


@attrs.frozen(kw_only=True)
class Header:
    """The first line: the format version, the stream dialect the frames are in, when it started."""

    time_ns: int
    dialect: str
    version: str = ""
    format: int = FORMAT


@attrs.frozen(kw_only=True)
class Frame:
    """A frame of a stream, as received (``sent`` False, ``received_ns`` its transport's stamp) or
    as handed to the transport to send."""

    time_ns: int
    connection: int
    stream: str
    sent: bool
    data: bytes
    received_ns: int | None = None


@attrs.frozen(kw_only=True)
class Mark:
    """An in-band note of the recording: ``name`` one of :class:`MarkName`, ``detail`` its fields."""

    time_ns: int
    connection: int
    stream: str
    name: str
    detail: Mapping[str, Detail] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Truncated:
    """Not a line: what reading yields last when the file stops short (a recorder killed before it
    closed). ``lines`` were read; ``reason`` says what was missing."""

    lines: int
    reason: str


Record: TypeAlias = Header | Frame | Mark

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_of(ns: int) -> datetime:
    """A line's time (ns since the epoch) as an aware UTC datetime, to the microsecond."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


#: The head of a received frame's line when the frame is written as it is, for ``%`` with (``t``,
#: ``c``, the stream's name in bytes, ``r``); the frame and ``}\n`` follow: the same bytes as
#: :func:`encode_frame` writes (the reference; a test holds them equal), formatted in place by the
#: recorder's hot path.
RECEIVED_VERBATIM = b'{"t":%d,"c":%d,"s":"%s","d":"in","r":%d,"j":'


def encode_frame(
    time_ns: int, connection: int, stream: str, sent: bool, data: bytes, received_ns: int | None
) -> bytes:
    """One frame line (with its newline), as bytes: the writer's hot path. A frame written as it is
    (rule 4) is never decoded, escaped or copied into a str: a fraction of the cost for a 3 KB book,
    paid on the writer thread under the GIL that the reader threads need."""
    if sent:
        head = f'{{"t":{time_ns},"c":{connection},"s":"{stream}","d":"out",'
    else:
        head = f'{{"t":{time_ns},"c":{connection},"s":"{stream}","d":"in","r":{received_ns},'
    if data and b"\n" not in data and (data.isascii() or _is_utf8(data)):
        return b"".join((head.encode(), b'"j":', data, b"}\n"))
    return f'{head}"f":{json_string(data)}}}\n'.encode()


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def encode_mark(time_ns: int, connection: int, stream: str, name: str, detail: Mapping[str, Detail]) -> bytes:
    """One mark line (with its newline)."""
    body = {"t": time_ns, "c": connection, "s": stream, "m": name, "v": dict(detail)}
    return (json.dumps(body, ensure_ascii=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def encode_line(record: Record) -> bytes:
    """Any record as its line (with its newline): UTF-8 bytes, as the file holds them."""
    if isinstance(record, Frame):
        return encode_frame(
            record.time_ns, record.connection, record.stream, record.sent, record.data, record.received_ns
        )
    if isinstance(record, Mark):
        return encode_mark(record.time_ns, record.connection, record.stream, record.name, record.detail)
    body = {
        "rxinvest_recording": record.format,
        "t": record.time_ns,
        "dialect": record.dialect,
        "version": record.version,
    }
    return (json.dumps(body, ensure_ascii=True, separators=(",", ":")) + "\n").encode()


def decode_line(line: bytes | str, number: int, path: str = "") -> Record:
    """The record of one line; :class:`~rxinvest.errors.CorruptRecordingError` if it is none."""
    raw = line if isinstance(line, bytes) else line.encode("utf-8", "surrogateescape")
    if raw.endswith(b"\n"):  # a line as encode_line gives it
        raw = raw[:-1]
    verbatim = _VERBATIM.match(raw)
    if verbatim is not None and raw.endswith(b"}"):  # a frame as it is: sliced, never parsed
        time_ns, connection, stream, direction, received = verbatim.groups()
        sent = direction == b"out"
        if sent == (received is None) and stream in _STREAM_NAMES:  # else the general path says why
            return Frame(
                time_ns=int(time_ns),
                connection=int(connection),
                stream=stream.decode(),
                sent=sent,
                data=raw[verbatim.end() : -1],
                received_ns=None if received is None else int(received),
            )
    try:
        body = json_value(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError; nesting
        why = "nested too deep" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise CorruptRecordingError(f"not JSON: {why}", line=number, path=path) from exc
    if not isinstance(body, dict):
        raise CorruptRecordingError("not a JSON object", line=number, path=path)
    try:
        return _record(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecordingError(
            f"not a record: {type(exc).__name__}: {exc}", line=number, path=path
        ) from exc


# A frame line with its frame as it is: every member before ``"j"``, in the writer's order; times
# and the connection have digits enough for any value _int allows, and no more.
_VERBATIM = re.compile(
    rb'\{"t":(\d{1,19}),"c":(\d{1,19}),"s":"(\w*)","d":"(in|out)"(?:,"r":(\d{1,19}))?,"j":'
)
_STREAM_NAMES = frozenset(stream.value.encode() for stream in Stream)
_LIMIT = 10**19  # times in ns (to the year 2286), connections and counts stay below it
#: The details of marks that readers take as times (ns) or counts, by the mark's name.
_COUNTED = {MarkName.CONNECTED: ("r",), MarkName.LOSS: ("dropped",), MarkName.END: ("frames", "lost")}


def _int(value: Any) -> int:
    """A non-negative integer below ``_LIMIT`` (a time in ns, a connection, a count)."""
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    if not 0 <= value < _LIMIT:
        raise ValueError(f"{value} is out of range")
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _record(body: dict[str, Any]) -> Record:
    if "rxinvest_recording" in body:
        version = _int(body["rxinvest_recording"])
        if version not in READABLE_FORMATS:
            raise ValueError(f"format {version} (this rxinvest reads {READABLE_FORMATS})")
        return Header(
            time_ns=_int(body["t"]),
            dialect=_str(body["dialect"]),
            version=_str(body.get("version", "")),
            format=version,
        )
    time_ns, connection, stream = _int(body["t"]), _int(body["c"]), _str(body["s"])
    if "m" in body:
        detail = body.get("v", {})
        if not isinstance(detail, dict) or not all(
            v is None or type(v) in (str, int, float, bool) for v in detail.values()
        ):
            raise TypeError(f"bad mark detail {detail!r}")
        name = _str(body["m"])
        for key in _COUNTED.get(name, ()):  # what readers take as times and counts
            if key in detail:
                _int(detail[key])
        return Mark(time_ns=time_ns, connection=connection, stream=stream, name=name, detail=detail)
    if stream.encode() not in _STREAM_NAMES:
        raise ValueError(f"unknown stream {stream!r}")
    direction = _str(body["d"])
    if direction not in ("in", "out"):
        raise ValueError(f"direction {direction!r}")
    data = _str(body["f"]).encode("utf-8", "surrogateescape")
    sent = direction == "out"
    return Frame(
        time_ns=time_ns,
        connection=connection,
        stream=stream,
        sent=sent,
        data=data,
        received_ns=None if sent else _int(body["r"]),
    )
