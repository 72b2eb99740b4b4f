"""How a recording's lines are compressed: zstd by default, gzip for a file named ``*.gz``.

Rules:

* **Writing** takes the compression it is given, or the file name's: a name ending in ``.gz`` is
  gzip (any ``zcat`` reads it), any other is zstd (``zstdcat`` reads it). Both at level 1.
* **Reading** never trusts the name: the first bytes say (gzip ``1f 8b``, zstd ``28 b5 2f fd``).
* A **sync** ends the current compressed block, so that a file cut at any point after it decodes
  up to there (zlib's ``Z_SYNC_FLUSH``, zstd's block flush); **finish** ends the stream, so that a
  reader can tell a finished file from one whose writer was killed (gzip's trailer, zstd's last
  block of the frame).
* Why zstd by default: compressing is what recording costs a client, and zstd's level 1 takes about
  a fifth of the CPU time of zlib's level 1 for the same lines (0.9 against 4.8 µs a depth-20 book,
  ``benchmarks/replay.py``), with a smaller file. The writer compresses on its own thread with the
  GIL released, but on a busy machine that CPU time is taken from the reader threads all the same.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import zstandard

__all__ = ["GZIP", "ZSTD", "Compressor", "Decompressor", "compression_of", "compressor", "decompressor"]

GZIP = "gzip"
ZSTD = "zstd"
_COMPRESSIONS = (GZIP, ZSTD)
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_WBITS = 31  # zlib's window bits for a gzip wrapper


def compression_of(path: str | os.PathLike[str], compression: str | None = None) -> str:
    """The compression to write ``path`` with: ``compression`` if given (``"zstd"`` or ``"gzip"``),
    else gzip for a name ending in ``.gz``, else zstd. Raises ValueError for another name."""
    if compression is None:
        return GZIP if os.fspath(path).lower().endswith(".gz") else ZSTD
    if compression not in _COMPRESSIONS:
        raise ValueError(
            f"compression must be one of {_COMPRESSIONS} or None (by the name), not {compression!r}"
        )
    return compression


class Compressor:
    """One compressed stream being written: a compressor object of zlib or zstandard (both have
    ``compress`` and ``flush(mode)``) with the flush modes that sync and finish it."""

    def __init__(self, z: Any, sync: int, finish: int) -> None:
        self._z, self._sync, self._finish = z, sync, finish

    def compress(self, data: bytes | bytearray) -> bytes:
        return bytes(self._z.compress(data))

    def sync(self) -> bytes:
        return bytes(self._z.flush(self._sync))

    def finish(self) -> bytes:
        return bytes(self._z.flush(self._finish))


def compressor(compression: str, level: int = 1) -> Compressor:
    """A new compressed stream of ``compression`` (see :func:`compression_of`)."""
    if compression == GZIP:
        gzip = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        return Compressor(gzip, zlib.Z_SYNC_FLUSH, zlib.Z_FINISH)
    # The frame checksum (xxhash64) lets a reader tell damaged data from lines, as gzip's CRC does.
    zstd = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
    return Compressor(zstd, zstandard.COMPRESSOBJ_FLUSH_BLOCK, zstandard.COMPRESSOBJ_FLUSH_FINISH)


class Decompressor:
    """One compressed stream being read; :meth:`next` starts the one that may follow it (gzip
    members and zstd frames may be concatenated). ``errors``: what :meth:`decompress` raises on
    damaged data."""

    errors: tuple[type[Exception], ...] = (zlib.error, zstandard.ZstdError)

    def __init__(self, compression: str) -> None:
        self.compression = compression
        #: What the end of a finished stream is called, for a reader to say it is missing.
        self.end = "gzip trailer" if compression == GZIP else "end of the zstd frame"
        self._d = self._new()

    def _new(self) -> zlib._Decompress | zstandard.ZstdDecompressionObj:
        if self.compression == GZIP:
            return zlib.decompressobj(_GZIP_WBITS)
        return zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, data: bytes) -> bytes:
        return self._d.decompress(data)

    @property
    def eof(self) -> bool:
        """The stream ended (its trailer or frame end was read)."""
        return bool(self._d.eof)

    @property
    def unused_data(self) -> bytes:
        """What followed the end of the stream."""
        return bytes(self._d.unused_data)

    def next(self) -> None:
        self._d = self._new()


def decompressor(head: bytes) -> Decompressor | None:
    """The decompressor for a file that starts with ``head`` (at least its first 4 bytes), or None
    if it is neither gzip nor zstd."""
    if head.startswith(_GZIP_MAGIC):
        return Decompressor(GZIP)
    if head.startswith(_ZSTD_MAGIC):
        return Decompressor(ZSTD)
    return None
