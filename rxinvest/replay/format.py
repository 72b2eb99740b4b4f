"""The recording format: one JSON object per line, gzip-compressed; the records and their encoding.

Rules of this module (pure: no I/O, no clock):

* A line is one record. The first is the :class:`Header`; then, in the order the recorder saw
  them, :class:`Frame` lines (``"d": "in"`` received, ``"d": "out"`` sent) and :class:`Mark` lines
  (lifecycle, gaps, losses); a cleanly closed file ends with the mark ``end``.
* ``t`` is the recorder's clock in ns since the epoch, never decreasing from one line to the next.
  A received frame also carries ``r``: the receive time its transport stamped (what the client's
  session was given), in ns. ``c`` numbers the logical connections of the recording from 1; ``s`` is
  the stream's method name (:class:`~rxinvest.wire.Stream`).
* A frame's bytes are kept exactly: decoded as UTF-8 with ``surrogateescape`` and written as a
  JSON string (UTF-8 as is; a frame that is not valid UTF-8 as an ASCII string with its escaped
  bytes), so every frame comes back byte for byte. The file is UTF-8, one record a line.
* :func:`decode_line` raises :class:`~rxinvest.errors.CorruptRecordingError` with the line number for
  anything that is not a record of this format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import attrs

from rxinvest.errors import CorruptRecordingError
from rxinvest.wire import json_string, json_value

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
FORMAT = 1

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


def encode_frame(
    time_ns: int, connection: int, stream: str, sent: bool, data: bytes, received_ns: int | None
) -> str:
    """One frame line (with its newline), without building a dict: the writer's hot path."""
    text = json_string(data)
    if sent:
        return f'{{"t":{time_ns},"c":{connection},"s":"{stream}","d":"out","f":{text}}}\n'
    return f'{{"t":{time_ns},"c":{connection},"s":"{stream}","d":"in","r":{received_ns},"f":{text}}}\n'


def encode_mark(time_ns: int, connection: int, stream: str, name: str, detail: Mapping[str, Detail]) -> str:
    """One mark line (with its newline)."""
    body = {"t": time_ns, "c": connection, "s": stream, "m": name, "v": dict(detail)}
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"), allow_nan=False) + "\n"


def encode_line(record: Record) -> str:
    """Any record as its line (with its newline)."""
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
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")) + "\n"


def decode_line(line: bytes | str, number: int, path: str = "") -> Record:
    """The record of one line; :class:`~rxinvest.errors.CorruptRecordingError` if it is none."""
    try:
        body = json_value(line)
    except ValueError as exc:  # UnicodeDecodeError is one
        raise CorruptRecordingError(f"not JSON: {exc}", line=number, path=path) from exc
    if not isinstance(body, dict):
        raise CorruptRecordingError("not a JSON object", line=number, path=path)
    try:
        return _record(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecordingError(
            f"not a record: {type(exc).__name__}: {exc}", line=number, path=path
        ) from exc


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _record(body: dict[str, Any]) -> Record:
    if "rxinvest_recording" in body:
        version = _int(body["rxinvest_recording"])
        if version != FORMAT:
            raise ValueError(f"format {version} (this rxinvest reads {FORMAT})")
        return Header(
            time_ns=_int(body["t"]), dialect=_str(body["dialect"]), version=_str(body.get("version", ""))
        )
    time_ns, connection, stream = _int(body["t"]), _int(body["c"]), _str(body["s"])
    if "m" in body:
        detail = body.get("v", {})
        if not isinstance(detail, dict) or not all(
            v is None or type(v) in (str, int, float, bool) for v in detail.values()
        ):
            raise TypeError(f"bad mark detail {detail!r}")
        return Mark(
            time_ns=time_ns, connection=connection, stream=stream, name=_str(body["m"]), detail=detail
        )
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
