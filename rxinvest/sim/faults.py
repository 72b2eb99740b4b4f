"""Misbehaviour on purpose: what the simulator can do wrong, per server or per connection.

A :class:`Faults` value is plain data. Counts are of frames the connection has sent (data, responses
and pings alike); times are seconds since the connection opened. From the command line each fault is
one ``name=value`` (``--fault drop_after=100 --fault close_code=4008``), see :meth:`Faults.parse`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

import attrs

__all__ = ["CLOSE_CODES", "MALFORMED_KINDS", "Faults", "malformed_frame"]

#: Close codes the proxy documents (4000 + gRPC status) and the generic server error.
CLOSE_CODES = (4003, 4004, 4008, 4016, 1011)
MALFORMED_KINDS = ("invalid_json", "wrong_types", "unknown_payload", "unknown_enum", "extra_fields")


def _flag(value: object) -> bool:
    return value in (True, 1, "1", "true", "yes", "on")


def _optional(kind: type) -> Any:
    return attrs.field(default=None, converter=attrs.converters.optional(kind))


def _close_code(instance: Faults, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value not in CLOSE_CODES:
        raise ValueError(f"close_code must be one of {CLOSE_CODES}, not {value}")


def _kinds(value: Iterable[str] | str) -> tuple[str, ...]:
    kinds = tuple(value.split("+")) if isinstance(value, str) else tuple(value)
    unknown = set(kinds) - set(MALFORMED_KINDS)
    if unknown:
        raise ValueError(f"unknown malformed kinds {sorted(unknown)}; choose from {MALFORMED_KINDS}")
    return kinds


def _probability(instance: Faults, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} is a probability in [0, 1], not {value}")


@attrs.frozen(kw_only=True)
class Faults:
    """Faults of one connection (or the default of every new connection).

    * ``drop_after`` / ``drop_at``: cut the TCP connection without a close frame after N frames /
      S seconds.
    * ``stall_after`` / ``stall_at``: go silent (no data, no pings) but keep the socket open.
    * ``close_code`` with ``close_after`` (frames, default 0: right after the first request) or
      ``close_at`` (seconds): close cleanly with 4003, 4004, 4008, 4016 or 1011.
    * ``malformed_every``: before every Nth frame, send an extra malformed one, of a kind drawn from
      ``malformed_kinds`` (nothing real is replaced, so nothing is lost).
    * ``too_many_requests``: refuse every subscription with SUBSCRIPTION_STATUS_TOO_MANY_REQUESTS.
    * ``internal_errors``: the probability that a subscription entry fails with INTERNAL_ERROR.
    * ``crossed_books`` / ``inconsistent_books``: the probability that a book snapshot is crossed
      (best bid above best ask), or misses levels; both are flagged ``is_consistent=False``.
    * ``burst``: on a market-data subscription, send pre-built book and trade frames as fast as the
      socket takes them (for benchmarks); ``burst_frames`` caps how many (None: until closed).
      ``burst_rate`` paces them instead (frames per second), each stamped with the real time it is
      sent (``time`` of the trade or book): a client measures delivery latency from it.
    """

    drop_after: int | None = _optional(int)
    drop_at: float | None = _optional(float)
    stall_after: int | None = _optional(int)
    stall_at: float | None = _optional(float)
    close_code: int | None = attrs.field(
        default=None, converter=attrs.converters.optional(int), validator=_close_code
    )
    close_after: int | None = _optional(int)
    close_at: float | None = _optional(float)
    malformed_every: int | None = _optional(int)
    malformed_kinds: tuple[str, ...] = attrs.field(default=MALFORMED_KINDS, converter=_kinds)
    too_many_requests: bool = attrs.field(default=False, converter=_flag)
    internal_errors: float = attrs.field(default=0.0, converter=float, validator=_probability)
    crossed_books: float = attrs.field(default=0.0, converter=float, validator=_probability)
    inconsistent_books: float = attrs.field(default=0.0, converter=float, validator=_probability)
    burst: bool = attrs.field(default=False, converter=_flag)
    burst_frames: int | None = _optional(int)
    burst_rate: float | None = _optional(float)

    @classmethod
    def parse(cls, items: Iterable[str]) -> Faults:
        """Faults from ``name=value`` strings; raises ValueError naming the bad item."""
        names = {a.name for a in attrs.fields(cls)}
        values: dict[str, str] = {}
        for item in items:
            name, sep, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in names:
                raise ValueError(f"bad fault {item!r}: expected NAME=VALUE with NAME one of {sorted(names)}")
            values[name] = value.strip()
        try:
            return cls(**values)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad faults {list(items)}: {exc}") from exc

    @property
    def any(self) -> bool:
        return self != Faults()


def malformed_frame(kind: str, sample: str, rng: random.Random) -> str:
    """A malformed frame of ``kind``, made from ``sample`` (a real frame) where the kind needs one.

    ``unknown_enum`` and ``extra_fields`` frames are valid for a tolerant decoder (they must decode);
    the other kinds are not.
    """
    if kind == "invalid_json":
        return sample[: max(1, len(sample) // 2)]
    if kind == "unknown_payload":
        return json.dumps({"somethingNew": {"value": rng.randint(0, 99)}})
    frame = json.loads(sample)
    (key, body), *_ = frame.items()
    if kind == "wrong_types":
        body = dict(body)
        victim = rng.choice(sorted(body)) if body else "figi"
        body[victim] = {"unexpected": [1, 2, 3]}
    elif kind == "unknown_enum":
        enum_like = [k for k, v in body.items() if isinstance(v, str) and v.isupper() and "_" in v]
        body = {**body, **dict.fromkeys(enum_like, "SOMETHING_NEW_IN_A_LATER_RELEASE")}
    elif kind == "extra_fields":
        body = {**body, "fieldFromTheFuture": {"nested": [1, "two", None]}, "anotherOne": 42}
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return json.dumps({key: body})
