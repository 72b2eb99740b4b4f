"""What a recording says, without playing it: its typed events' digest, and a summary.

Rules of this module (pure: it reads records, never the clock or the network):

* **Digest.** Per stream, a SHA-256 over the typed events its received frames decode to, in file
  order, each encoded canonically: its class name and its attrs ``repr`` (every field in declaration
  order; Decimals, datetimes and enums exactly), one a line; a frame that does not decode counts as
  the line ``DecodeError <reason>``. The recorder stores the digests it computed when it closed (a
  ``digest`` mark before ``end``); :func:`summarize` computes them again with the codec of today and
  compares: a difference means the codec now reads the recording differently.
* **Summary.** :func:`summarize` counts what a recording holds: connections and frames per stream,
  typed events per kind, instruments, the time span, reconnects, gaps, losses, and whether it ends
  cleanly.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import attrs

from rxinvest.errors import DecodeError
from rxinvest.replay.format import Frame, Header, MarkName, Record, Truncated, time_of
from rxinvest.replay.read import read
from rxinvest.wire import decoder

__all__ = ["Check", "Summary", "digests", "summarize"]


class _Digests:
    """Running digests per stream, fed received frames."""

    def __init__(self) -> None:
        self._hashes: dict[str, Any] = {}
        self._decoders: dict[str, Any] = {}
        self.events: Counter[str] = Counter()  # typed events per kind (class name)
        self.instruments: set[str] = set()

    def add(self, frame: Frame) -> None:
        stream = frame.stream
        decode = self._decoders.get(stream)
        if decode is None:
            decode = self._decoders[stream] = decoder(stream)
            self._hashes[stream] = hashlib.sha256()
        try:
            event = decode(frame.data)
        except DecodeError as exc:
            line = f"DecodeError {exc.reason}\n"
            self.events["DecodeError"] += 1
        else:
            name = type(event).__name__
            line = f"{name} {event!r}\n"
            self.events[name] += 1
            instrument = getattr(event, "instrument_uid", "") or getattr(event, "figi", "")
            if instrument:
                self.instruments.add(instrument)
        self._hashes[stream].update(line.encode())

    def hexdigests(self) -> dict[str, str]:
        return {stream: sha.hexdigest() for stream, sha in sorted(self._hashes.items())}


def digests(records: Iterable[Record | Truncated]) -> dict[str, str]:
    """The digest of each stream's received frames (see the module's rules), by stream name."""
    running = _Digests()
    for record in records:
        if type(record) is Frame and not record.sent:
            running.add(record)
    return running.hexdigests()


@attrs.frozen(kw_only=True)
class Summary:
    """What a recording holds (:func:`summarize`)."""

    path: str
    version: str  # of the rxinvest that recorded it
    dialect: str
    start: datetime | None
    end: datetime | None
    connections: dict[str, int]  # per stream
    frames: dict[str, tuple[int, int]]  # per stream: (received, sent)
    events: dict[str, int]  # typed events per kind; DecodeError: frames that did not decode
    instruments: tuple[str, ...]  # instrument uids (figis where an event has no uid), sorted
    reconnects: int
    gaps: int  # gap marks: the client told its subscribers events may be missing
    lost: int  # lines the recorder dropped (loss marks)
    clean: bool  # ends with the ``end`` mark
    truncated: str  # why the file stops short ("" if it does not)
    digests: dict[str, str] | None  # stored by the recorder at close (None: not there)
    computed: dict[str, str]  # of the frames as today's codec decodes them

    @property
    def check(self) -> Check:
        """The stored digests against the computed ones."""
        return Check(stored=self.digests, computed=self.computed)

    @property
    def seconds(self) -> float:
        return 0.0 if self.start is None or self.end is None else (self.end - self.start).total_seconds()


def summarize(path: str | os.PathLike[str]) -> Summary:
    """Read the whole recording at ``path`` and say what it holds.

    Raises :class:`~rxinvest.errors.RecordingError` if it cannot be read, and
    :class:`~rxinvest.errors.CorruptRecordingError` (with the line) at a damaged line.
    """
    running = _Digests()
    header: Header | None = None
    first = last = None
    connections: dict[str, set[int]] = {}
    frames: dict[str, list[int]] = {}
    marks: Counter[str] = Counter()
    lost = 0
    stored: dict[str, str] | None = None
    truncated = ""
    clean = False
    for record in read(path):
        if isinstance(record, Header):
            header = record
            continue
        if isinstance(record, Truncated):
            truncated = record.reason
            continue
        first = record.time_ns if first is None else first
        last = record.time_ns
        clean = False
        if isinstance(record, Frame):
            connections.setdefault(record.stream, set()).add(record.connection)
            frames.setdefault(record.stream, [0, 0])[record.sent] += 1
            if not record.sent:
                running.add(record)
            continue
        marks[record.name] += 1
        if record.name == MarkName.LOSS:
            lost += int(record.detail.get("dropped") or 0)
        elif record.name == MarkName.DIGEST:
            stored = {k: str(v) for k, v in record.detail.items()}
        elif record.name == MarkName.END:
            clean = True
    assert header is not None  # read() raises on a file without one
    return Summary(
        path=os.fspath(path),
        version=header.version,
        dialect=header.dialect,
        start=None if first is None else time_of(first),
        end=None if last is None else time_of(last),
        connections={stream: len(numbers) for stream, numbers in sorted(connections.items())},
        frames={stream: (counts[0], counts[1]) for stream, counts in sorted(frames.items())},
        events=dict(sorted(running.events.items())),
        instruments=tuple(sorted(running.instruments)),
        reconnects=marks[MarkName.RECONNECT],
        gaps=marks[MarkName.GAP],
        lost=lost,
        clean=clean,
        truncated=truncated,
        digests=stored,
        computed=running.hexdigests(),
    )


@attrs.frozen(kw_only=True)
class Check:
    """The digests stored at record time against those of today's codec (:attr:`Summary.check`)."""

    stored: dict[str, str] | None
    computed: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.stored is not None and self.stored == self.computed

    @property
    def differing(self) -> tuple[str, ...]:
        """The streams whose typed events differ (all of them when nothing was stored)."""
        stored = self.stored or {}
        streams = sorted(set(stored) | set(self.computed))
        return tuple(s for s in streams if stored.get(s) != self.computed.get(s))
