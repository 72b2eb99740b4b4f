"""Record raw frames with their receive times, and replay them through the codec under virtual time.

Recording (:func:`record`, or ``rxinvest.connect(record=path)``): a :class:`Recorder` taps each stream
connection between its session and its transport (a :class:`~rxinvest.transport.Tap`): it sees
the frames both ways with their times, and the connection's lifecycle, never the handshake's
headers, so never a token. A background thread writes them to a compressed JSON-lines file
(:mod:`rxinvest.replay.format`); :func:`read` gives them back as typed records.

Why zstd, and gzip only for a file named ``*.gz`` (:mod:`rxinvest.replay.compression`): at level 1
zstd compresses a line in a fifth of zlib's time, into a file a quarter the size; both streams,
synced every half second and cut short by a kill, decode up to their last sync. ``zstdcat`` reads
one, ``zcat`` the other, and :func:`read` both, by their first bytes.

Replay (``rxinvest.connect(replay=path)``, :mod:`rxinvest.replay.play`): a :class:`Player` is the
replaying client's transports; it hands them the recorded frames at their recorded times on a
:class:`ReplayScheduler` (virtual time, driven instant by instant), so the client's sources, codec,
sessions and markers, and the operators given that scheduler, run as they ran live.

It may import the transport interface (:mod:`rxinvest.transport`), the protocol, the codec and the
model; it sits beside :mod:`rxinvest.streams`, not under it, and never opens a socket.
"""

from rxinvest.replay.clock import ReplayScheduler
from rxinvest.replay.format import (
    FORMAT,
    Frame,
    Header,
    Mark,
    MarkName,
    Record,
    Truncated,
    decode_line,
    encode_line,
)
from rxinvest.replay.play import Player, ReplayStats
from rxinvest.replay.read import read
from rxinvest.replay.record import DEFAULT_FLUSH_INTERVAL, Recorder, record

__all__ = [
    "DEFAULT_FLUSH_INTERVAL",
    "FORMAT",
    "Frame",
    "Header",
    "Mark",
    "MarkName",
    "Player",
    "Record",
    "Recorder",
    "ReplayScheduler",
    "ReplayStats",
    "Truncated",
    "decode_line",
    "encode_line",
    "read",
    "record",
]
