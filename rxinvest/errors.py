"""The exception tree of rxinvest: every error the library raises derives from ``RxInvestError``.

::

    RxInvestError
    ├── ConfigurationError (also ValueError)   a bad argument or setting, found before any I/O
    └── WireError                              the JSON wire codec
        ├── DecodeError (also ValueError)      a received frame is malformed; carries ``raw``
        └── EncodeError (also ValueError)      a value cannot be written on the wire

Third-party exceptions (orjson's, attrs') are translated where they occur, with ``raise ... from``,
and never reach users.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "DecodeError", "EncodeError", "RxInvestError", "WireError"]

#: How many characters of a bad frame a ``DecodeError`` keeps (frames can be megabytes).
RAW_LIMIT = 256


class RxInvestError(Exception):
    """Base of every rxinvest error."""


class ConfigurationError(RxInvestError, ValueError):
    """A bad argument or setting (unknown stream name, dialect, target ...)."""


class WireError(RxInvestError):
    """Base of the JSON codec's errors."""


class DecodeError(WireError, ValueError):
    """A frame is not a valid message of its stream.

    ``raw`` holds the first ``RAW_LIMIT`` characters of the frame (bytes decoded as UTF-8 with
    replacement), followed by ``…`` when it was cut.
    """

    def __init__(self, reason: str, raw: str | bytes | bytearray | memoryview = "") -> None:
        self.reason = reason
        self.raw = _truncate(raw)
        super().__init__(f"{reason}; frame: {self.raw!r}" if self.raw else reason)


class EncodeError(WireError, ValueError):
    """A model value cannot be encoded (naive datetime, more than 9 decimals, int out of range ...)."""


def _truncate(raw: str | bytes | bytearray | memoryview) -> str:
    cut = raw[: RAW_LIMIT + 1]
    text = cut if isinstance(cut, str) else bytes(cut).decode("utf-8", "replace")
    return text[:RAW_LIMIT] + "…" if len(text) > RAW_LIMIT else text
