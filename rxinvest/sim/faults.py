"""Misbehaviour on purpose: what the simulator can do wrong, per server or per connection.

A :class:`Faults` value is plain data. Counts are of frames the connection has sent (data, responses
and pings alike), and times are seconds, since the connection opened, or, for faults put on an open
connection (``Simulator.set_connection_faults``), since they were put on. From the command line
each fault is one ``name=value`` (``--fault drop_after=100 --fault close_code=4008``), see
:meth:`Faults.parse`.
A bad value, from the command line or not, is a :class:`~rxinvest.errors.ConfigurationError` that
names the fault. How a connection applies its faults is :mod:`rxinvest.sim.fault_injection`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

import attrs

from rxinvest.errors import ConfigurationError

__all__ = ["CLOSE_CODES", "MALFORMED_KINDS", "Faults", "malformed_frame"]

#: Close codes the proxy documents (4000 + gRPC status) and the generic server error.
CLOSE_CODES = (4003, 4004, 4008, 4016, 1011)
MALFORMED_KINDS = ("invalid_json", "wrong_types", "unknown_payload", "unknown_enum", "extra_fields")


def _flag(value: object) -> bool:
    return value in (True, 1, "1", "true", "yes", "on")


def _number(instance: Faults, attribute: attrs.Attribute[Any], value: object) -> None:
    """Numeric faults must hold a number (or None, where None is their default)."""
    if value is None and attribute.default is None:
        return
    if not isinstance(value, int | float):
        raise ConfigurationError(f"{attribute.name} must be a number, not {value!r}")


def _numeric(kind: type[int] | type[float], default: float | None, *checks: Any) -> Any:
    """A numeric fault: converted to ``kind`` (from the command line's text too), then checked."""

    def convert(value: str | float | None) -> object:
        try:
            return None if value is None else kind(value)
        except (TypeError, ValueError):
            return value  # left as it is, for _number to refuse with the fault's name

    return attrs.field(default=default, converter=convert, validator=[_number, *checks])


def _close_code(instance: Faults, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value not in CLOSE_CODES:
        raise ConfigurationError(f"close_code must be one of {CLOSE_CODES}, not {value}")


def _kinds(value: Iterable[str] | str) -> tuple[str, ...]:
    kinds = tuple(value.split("+")) if isinstance(value, str) else tuple(value)
    unknown = set(kinds) - set(MALFORMED_KINDS)
    if unknown:
        raise ConfigurationError(f"unknown malformed kinds {sorted(unknown)}; choose from {MALFORMED_KINDS}")
    return kinds


def _probability(instance: Faults, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"{attribute.name} is a probability in [0, 1], not {value}")


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

    drop_after: int | None = _numeric(int, None)
    drop_at: float | None = _numeric(float, None)
    stall_after: int | None = _numeric(int, None)
    stall_at: float | None = _numeric(float, None)
    close_code: int | None = _numeric(int, None, _close_code)
    close_after: int | None = _numeric(int, None)
    close_at: float | None = _numeric(float, None)
    malformed_every: int | None = _numeric(int, None)
    malformed_kinds: tuple[str, ...] = attrs.field(default=MALFORMED_KINDS, converter=_kinds)
    too_many_requests: bool = attrs.field(default=False, converter=_flag)
    internal_errors: float = _numeric(float, 0.0, _probability)
    crossed_books: float = _numeric(float, 0.0, _probability)
    inconsistent_books: float = _numeric(float, 0.0, _probability)
    burst: bool = attrs.field(default=False, converter=_flag)
    burst_frames: int | None = _numeric(int, None)
    burst_rate: float | None = _numeric(float, None)

    @classmethod
    def parse(cls, items: Iterable[str]) -> Faults:
        """Faults from ``name=value`` strings; raises ConfigurationError naming the bad item."""
        items = list(items)
        names = {a.name for a in attrs.fields(cls)}
        values: dict[str, str] = {}
        for item in items:
            name, sep, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in names:
                message = f"bad fault {item!r}: expected NAME=VALUE with NAME one of {sorted(names)}"
                raise ConfigurationError(message)
            values[name] = value.strip()
        try:
            return cls(**values)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:  # ConfigurationError is a ValueError
            raise ConfigurationError(f"bad faults {items}: {exc}") from exc

    @property
    def any(self) -> bool:
        return self != Faults()


def malformed_frame(kind: str, sample: str, rng: random.Random) -> str:
    """A malformed frame of ``kind``, made from ``sample`` (a real frame) where the kind needs one.

    ``unknown_enum`` and ``extra_fields`` frames are valid for a tolerant decoder (they must decode);
    the other kinds are not. An unknown ``kind`` is a :class:`~rxinvest.errors.ConfigurationError`.
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
        raise ConfigurationError(f"unknown malformed kind {kind!r}; choose from {MALFORMED_KINDS}")
    return json.dumps({key: body})
