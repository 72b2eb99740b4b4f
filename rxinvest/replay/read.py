"""Reading a recording: :func:`read` yields its records in file order.

Rules:

* The compression is the file's (gzip or zstd: its first bytes say, not its name).
* A line that is not a record, or a compressed block that is damaged, raises
  :class:`~rxinvest.errors.CorruptRecordingError` with its line number: never taken for the end.
  So does a line longer than :data:`MAX_LINE` bytes (no recorder writes one: a frame of the API is
  a few KB), before it is held in memory whole.
* A file that stops short (its recorder was killed: no gzip trailer or zstd frame end, or a last
  line without its newline) ends the iteration with a :class:`~rxinvest.replay.Truncated` record
  saying how many lines were read; every line up to the recorder's last flush is there.
* A cleanly closed file ends with the ``end`` mark and nothing after it.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

from rxinvest.errors import CorruptRecordingError, RecordingError
from rxinvest.replay.compression import decompressor as decompressor_for
from rxinvest.replay.format import Header, Record, Truncated, decode_line

__all__ = ["MAX_LINE", "read"]

#: Bytes a line may hold at most.
MAX_LINE = 64 << 20

_CHUNK = 1 << 16


def read(path: str | os.PathLike[str]) -> Generator[Record | Truncated, None, None]:
    """The records of the recording at ``path``, in order: a :class:`~rxinvest.replay.Header` first,
    then :class:`~rxinvest.replay.Frame` and :class:`~rxinvest.replay.Mark` records, and a
    :class:`~rxinvest.replay.Truncated` last if the file was cut short.

    Raises :class:`~rxinvest.errors.RecordingError` if the file cannot be opened, and
    :class:`~rxinvest.errors.CorruptRecordingError` (with ``line``) at a damaged line.
    """
    name = os.fspath(path)
    try:
        file = open(name, "rb")  # noqa: SIM115 (closed below, also when the caller stops early)
    except OSError as exc:
        raise RecordingError(f"cannot read {name}: {exc.strerror or exc}") from exc
    with file:
        yield from _records(file, name)


def _records(file: object, name: str) -> Iterator[Record | Truncated]:
    number = 0
    # The pieces of the line not yet ended, joined once it ends: growing it chunk by chunk would
    # copy it again for every chunk.
    partial: list[bytes] = []
    partial_size = 0
    chunk = file.read(_CHUNK)  # type: ignore[attr-defined]
    if not chunk:
        raise CorruptRecordingError("not a recording: the file is empty", line=1, path=name)
    decompressor = decompressor_for(chunk[:4])
    if decompressor is None:
        raise CorruptRecordingError("not a recording: neither gzip nor zstd data", line=1, path=name)
    finished = False  # the current compressed stream ended (gzip trailer, zstd frame end)
    while chunk:
        while chunk:
            if finished:  # another stream follows (gzip members, zstd frames may be concatenated)
                decompressor.next()
                finished = False
            try:
                text = decompressor.decompress(chunk)
            except decompressor.errors as exc:
                raise CorruptRecordingError(
                    f"damaged compressed data: {exc}", line=number + 1, path=name
                ) from exc
            chunk = b""
            if decompressor.eof:
                finished = True
                chunk = decompressor.unused_data
            if text:
                lines = text.split(b"\n")
                if len(lines) == 1:  # no line ends in it: the unfinished one grows
                    partial.append(text)
                    partial_size += len(text)
                else:
                    if partial:
                        partial.append(lines[0])
                        lines[0] = b"".join(partial)
                    last = lines.pop()
                    partial, partial_size = ([last], len(last)) if last else ([], 0)
                    for line in lines:
                        number += 1
                        record = decode_line(line, number, name)
                        if number == 1 and not isinstance(record, Header):
                            raise CorruptRecordingError("not a recording: no header", line=1, path=name)
                        yield record
                if partial_size > MAX_LINE:
                    too_long = f"a line longer than {MAX_LINE} bytes"
                    raise CorruptRecordingError(too_long, line=number + 1, path=name)
        chunk = file.read(_CHUNK)  # type: ignore[attr-defined]
    if number == 0:  # nothing in it, or cut inside its first line
        raise CorruptRecordingError("not a recording: no complete header line", line=1, path=name)
    if partial_size:
        yield Truncated(
            lines=number, reason=f"the last line stops short ({partial_size} bytes without a newline)"
        )
    elif not finished:
        yield Truncated(lines=number, reason=f"the compressed stream stops short (no {decompressor.end})")
