"""The JSON codec of the T-Invest WebSocket proxy: the only place that knows wire names and encodings.

Decoding follows the proto3 JSON mapping as the proxy uses it (spec §1.3-§1.4):

* both key styles are read, field by field: lowerCamelCase (``json``) and proto names (``json-proto``);
* a missing key or ``null`` means the proto3 default ("", 0, False, the zero enum member, an empty
  tuple, ``None`` for messages, timestamps and ``optional`` scalars); unknown keys are ignored;
* int64 arrive as strings (numbers are accepted too), int32 as numbers (strings accepted too);
* an enum name (or number) the model does not know decodes to the enum's zero member
  (``*_UNSPECIFIED``, or ``MARKER_UNKNOWN``), so a value added by a later API release never breaks a
  stream;
* anything else malformed raises :class:`~rxinvest.errors.DecodeError`, and nothing else does.

How it is fast: for every model class a msgspec ``Struct`` mirrors its wire shape (one field per key,
both spellings of a multi-word name), so msgspec parses and type-checks a frame in one pass in C
without building dicts. Generated straight-line code then turns that struct into the attrs event.
Quotations, money values and order-book levels repeat from one message to the next, so their decoded
values are interned in bounded caches.
"""

from __future__ import annotations

import enum
import itertools
import json
import keyword
import linecache
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Context, Decimal
from json.encoder import encode_basestring_ascii
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple, overload

import attrs
import msgspec

from rxinvest import model as m
from rxinvest.errors import RAW_LIMIT, ConfigurationError, DecodeError, EncodeError
from rxinvest.wire.endpoints import Dialect, Stream, Unary
from rxinvest.wire.schema import FieldSpec, WireType, fields_of, json_name

__all__ = [
    "CACHE_LIMIT",
    "UNARY_TYPES",
    "UnaryTypes",
    "clear_caches",
    "decode",
    "decode_request",
    "decode_unary",
    "decode_unary_error",
    "decode_unary_request",
    "decoder",
    "dump",
    "encode",
    "encode_unary",
    "encode_unary_error",
    "json_string",
    "json_value",
    "load",
]

Message = Any  # any model instance

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_I32_MIN: Final = -(2**31)
_I32_MAX: Final = 2**31 - 1
_NANO: Final = 10**9
# Quotation arithmetic needs at most 19 + 9 digits; a private context keeps the caller's
# (possibly lower) decimal precision from rounding prices.
_CTX: Final = Context(prec=40)
#: Interned values per cache: bounded memory on a stream that runs for weeks. A full cache forgets its
#: oldest ``1 / _EVICT_FRACTION`` at once (first stored, first forgotten), not everything.
CACHE_LIMIT: Final = 1 << 16
# A full cache drops its oldest eighth: its memory stays level within an eighth of its size (a cache
# emptied when full would saw-tooth between nothing and everything, and make the allocators hand
# back and ask again for its whole size), at an amortised cost of copying seven entries per miss.
_EVICT_FRACTION: Final = 8


class _Malformed(Exception):
    """Internal: why a frame is bad; becomes a ``DecodeError`` carrying the raw text at the boundary."""


# --- wire structs: what msgspec parses ----------------------------------------------------------------


class _QuotationWire(msgspec.Struct, gc=False):
    units: str | int | None = None
    nano: int | str | None = None


class _MoneyWire(msgspec.Struct, gc=False):
    currency: str | None = None
    units: str | int | None = None
    nano: int | str | None = None


class _StatusWire(msgspec.Struct):
    """``google.rpc.Status``; ``grpcCode`` is the grpc-gateway spelling of ``code``."""

    code: int | str | None = None
    grpcCode: int | str | None = None
    message: str | None = None
    details: list[Any] | None = None


_SCALAR_WIRE_TYPES: dict[WireType, Any] = {
    WireType.STRING: str,
    WireType.BOOL: bool,
    WireType.INT64: str | int,
    WireType.INT32: int | str,
    WireType.QUOTATION: _QuotationWire,
    WireType.MONEY: _MoneyWire,
    WireType.TIMESTAMP: str,
    WireType.ENUM: str | int,
}


def _proto_name(spec: FieldSpec) -> str:
    """The proto name of a field: its attribute name, but for a proto name that is a Python keyword
    (``from``, ``yield``), which the model spells with a trailing underscore (``from_``)."""
    name = spec.name
    return name[:-1] if name.endswith("_") and keyword.iskeyword(name[:-1]) else name


def _keys(spec: FieldSpec) -> tuple[str, ...]:
    """The wire keys of a field: camelCase first, then the proto name when it differs."""
    proto = _proto_name(spec)
    return (spec.json_name,) if spec.json_name == proto else (spec.json_name, proto)


def _slot(key: str) -> str:
    """The wire struct's attribute for ``key``: generated code reads ``s.<key>``, and ``s.from`` is
    no Python, so a keyword key is stored under ``<key>_`` and renamed back for msgspec."""
    return key + "_" if keyword.iskeyword(key) else key


# --- scalar helpers (slow paths that validate fully and explain) ----------------------------------------


def _int(value: str | int, where: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _Malformed(f"{where}: expected an integer, got {value!r:.40}") from None
    if not low <= number <= high:
        raise _Malformed(f"{where}: {number} is outside [{low}, {high}]")
    return number


_int64s: dict[str, int] = {}


def _int64(value: str | int, where: str) -> int:
    """An int64 from its wire form. Only canonical decimal strings ("-12", not " 12", "+12" or
    "012") are interned, so a hit stands for exactly what a cold decode gives."""
    number = _int(value, where, _I64_MIN, _I64_MAX)
    if type(value) is str and len(value) < 19 and value.isascii() and value == str(number):
        _store(_int64s, value, number)
    return number


def _decimal(units: int, nano: int) -> Decimal:
    # Canonical form: no trailing zeros, no exponent for whole numbers (Decimal('178.97'), Decimal('179')).
    if nano == 0:
        return Decimal(units)
    return Decimal(units * _NANO + nano).scaleb(-9, _CTX).normalize(_CTX)


def _quotation_value(units: str | int | None, nano: str | int | None, where: str) -> Decimal:
    return _decimal(
        0 if units is None else _int(units, where + ".units", _I64_MIN, _I64_MAX),
        0 if nano is None else _int(nano, where + ".nano", 1 - _NANO, _NANO - 1),
    )


# Interning. msgspec has already checked the types, so a key holds only str, int and None, and str
# never equals int. Keys are stored only in their canonical wire types (int64 as str, int32 as int),
# hence a cache hit always stands for exactly the value the slow path would build.
_quotations: dict[tuple[Any, Any], Decimal] = {}
_moneys: dict[tuple[Any, Any, Any], m.Money] = {}
_level_cache: dict[tuple[Any, Any, Any], m.Order] = {}


def _canonical(units: object, nano: object) -> bool:
    return (units is None or type(units) is str) and (nano is None or type(nano) is int)


def _store(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= CACHE_LIMIT:
        _evict(cache)
    cache[key] = value


def _evict(cache: dict[Any, Any]) -> None:
    """Forget the oldest entries of a full ``cache`` (a dict keeps insertion order), down to its
    bound less an eighth (at least one entry). In place, as the generated converters hold the
    caches themselves; by copying what is kept into it afresh, not by deleting entries one by one,
    which would leave the table full of dead slots that double its size when it next grows.
    Another reader thread may find the cache emptier for a moment (a miss, decoded the slow way),
    never a wrong value; should one change it during the copy (the copy runs in C, but a garbage
    collection inside it may run Python code and switch threads), the cache is emptied instead."""
    excess = len(cache) - CACHE_LIMIT + max(1, CACHE_LIMIT // _EVICT_FRACTION)
    try:
        kept = dict(itertools.islice(cache.items(), excess, None))
    except RuntimeError:  # "dictionary changed size during iteration"
        kept = {}
    cache.clear()
    cache.update(kept)


def _quotation(wire: _QuotationWire, where: str) -> Decimal:
    key = (wire.units, wire.nano)
    hit = _quotations.get(key)
    if hit is None:
        hit = _quotation_value(wire.units, wire.nano, where)
        if _canonical(*key):
            _store(_quotations, key, hit)
    return hit


def _money(wire: _MoneyWire, where: str) -> m.Money:
    key = (wire.currency, wire.units, wire.nano)
    hit = _moneys.get(key)
    if hit is None:
        hit = m.Money(_quotation_value(wire.units, wire.nano, where), wire.currency or "")
        if _canonical(wire.units, wire.nano):
            _store(_moneys, key, hit)
    return hit


def _timestamp(text: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Malformed(f"{where}: expected an RFC 3339 timestamp, got {text!r:.40}") from None
    if moment.tzinfo is None:
        raise _Malformed(f"{where}: timestamp {text!r:.40} has no UTC offset")
    return moment.astimezone(UTC)


def _enum_fallback(numbers: dict[int, Any], zero: Any, value: str | int) -> Any:
    # Names were looked up inline; here come numbers and names this release does not know.
    return numbers.get(value, zero) if type(value) is int else zero


def _levels(levels: list[Any]) -> tuple[m.Order, ...]:
    out: list[m.Order] = []
    append = out.append
    cache = _level_cache
    for level in levels:
        price = level.price
        if price is not None:
            hit = cache.get((price.units, price.nano, level.quantity))
            if hit is not None:
                append(hit)
                continue
        append(_level(level))
    return tuple(out)


def _level(level: Any) -> m.Order:
    order: m.Order = _CODE.converters[m.Order](level)
    price = level.price
    if price is not None and _canonical(price.units, price.nano) and type(level.quantity) is str:
        _store(_level_cache, (price.units, price.nano, level.quantity), order)
    return order


def clear_caches() -> None:
    """Forget every interned quotation, money value and book level (for benchmarks and tests)."""
    _quotations.clear()
    _moneys.clear()
    _level_cache.clear()
    _int64s.clear()


# --- scalar encoders ---------------------------------------------------------------------------------


def _enc_int(value: object, where: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise EncodeError(f"{where}: expected an int in [{low}, {high}], got {value!r}")
    return value


def _quotation_split(value: object, where: str) -> tuple[int, int]:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise EncodeError(f"{where}: expected a finite Decimal, got {value!r}")
    units = int(value)
    nano = (value - units).scaleb(9, _CTX)
    if nano != nano.to_integral_value():
        raise EncodeError(f"{where}: {value} has more than 9 decimal places")
    if not _I64_MIN <= units <= _I64_MAX:
        raise EncodeError(f"{where}: {value} is outside the int64 range of Quotation.units")
    return units, int(nano)


def _enc_quotation(value: object, where: str, full: bool) -> dict[str, Any]:
    units, nano = _quotation_split(value, where)
    out: dict[str, Any] = {}
    if full or units:
        out["units"] = str(units)
    if full or nano:
        out["nano"] = nano
    return out


def _enc_money(value: object, where: str, full: bool) -> dict[str, Any]:
    if type(value) is not m.Money:
        raise EncodeError(f"{where}: expected Money, got {value!r}")
    out: dict[str, Any] = {}
    if full or value.currency:
        out["currency"] = _enc_str(value.currency, where + ".currency")
    out.update(_enc_quotation(value.amount, where + ".amount", full))
    return out


def _enc_timestamp(value: object, where: str) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise EncodeError(f"{where}: expected an aware datetime, got {value!r}")
    # isoformat pads the year to four digits (strftime's %Y does not on every platform) and leaves
    # out a zero fraction, as proto3 JSON printers do.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _enc_enum(value: object, where: str, cls: type[enum.Enum]) -> str:
    if type(value) is not cls:
        raise EncodeError(f"{where}: expected {cls.__name__}, got {value!r}")
    return value.name


def _enc_str(value: object, where: str) -> str:
    if type(value) is not str:
        raise EncodeError(f"{where}: expected str, got {value!r}")
    return value


def _enc_bool(value: object, where: str) -> bool:
    if type(value) is not bool:
        raise EncodeError(f"{where}: expected bool, got {value!r}")
    return value


def _enc_tuple(value: object, where: str) -> tuple[Any, ...]:
    if type(value) is not tuple:
        raise EncodeError(f"{where}: expected a tuple, got {type(value).__name__}")
    return value


# --- code generation ---------------------------------------------------------------------------------

# Converting snippets: ``{v}`` holds a non-null value that msgspec has already type-checked against
# the wire struct; each sets ``{out}``. The common case runs inline, the rest in the helpers above.
_CONVERT = {
    WireType.STRING: "{out} = {v}",
    WireType.BOOL: "{out} = {v}",
    # A string of at most 18 characters cannot leave the int64 range.
    # int64 strings repeat (quantities, volumes): interned like quotations.
    WireType.INT64: "{out} = _int64s.get({v})\nif {out} is None: {out} = _int64({v}, {where!r})",
    WireType.INT32: (
        "{out} = {v} if type({v}) is int and _I32_MIN <= {v} <= _I32_MAX "
        "else _int({v}, {where!r}, _I32_MIN, _I32_MAX)"
    ),
    WireType.QUOTATION: (
        "{out} = _quotations.get(({v}.units, {v}.nano))\nif {out} is None: {out} = _quotation({v}, {where!r})"
    ),
    WireType.MONEY: "{out} = _money({v}, {where!r})",
    WireType.TIMESTAMP: (
        "try: {out} = _fromisoformat({v})\n"
        "except ValueError: {out} = _timestamp({v}, {where!r})\n"
        "if {out}.tzinfo is not _UTC: {out} = _timestamp({v}, {where!r})"
    ),
    WireType.ENUM: (
        "{out} = {names}.get({v})\nif {out} is None: {out} = _enum_fallback({numbers}, {zero}, {v})"
    ),
    WireType.MESSAGE: "{out} = {converter}({v})",
}

_ENCODE = {
    WireType.STRING: "_enc_str({v}, {where!r})",
    WireType.BOOL: "_enc_bool({v}, {where!r})",
    WireType.INT64: "str(_enc_int({v}, {where!r}, _I64_MIN, _I64_MAX))",
    WireType.INT32: "_enc_int({v}, {where!r}, _I32_MIN, _I32_MAX)",
    WireType.QUOTATION: "_enc_quotation({v}, {where!r}, full)",
    WireType.MONEY: "_enc_money({v}, {where!r}, full)",
    WireType.TIMESTAMP: "_enc_timestamp({v}, {where!r})",
    WireType.ENUM: "_enc_enum({v}, {where!r}, {target})",
    WireType.MESSAGE: "{encoder}({v}, full)",
}


class _Generated:
    """Wire structs, converters (struct -> attrs) and encoders (attrs -> dict) for the model classes."""

    def __init__(self, classes: Iterable[type]) -> None:
        self.namespace: dict[str, Any] = {
            "_int": _int,
            "_int64": _int64,
            "_int64s": _int64s,
            "_quotations": _quotations,
            "_quotation": _quotation,
            "_money": _money,
            "_fromisoformat": datetime.fromisoformat,
            "_timestamp": _timestamp,
            "_UTC": UTC,
            "_enum_fallback": _enum_fallback,
            "_levels": _levels,
            "_new": object.__new__,
            "_I64_MIN": _I64_MIN,
            "_I64_MAX": _I64_MAX,
            "_I32_MIN": _I32_MIN,
            "_I32_MAX": _I32_MAX,
            "_enc_str": _enc_str,
            "_enc_bool": _enc_bool,
            "_enc_int": _enc_int,
            "_enc_quotation": _enc_quotation,
            "_enc_money": _enc_money,
            "_enc_timestamp": _enc_timestamp,
            "_enc_enum": _enc_enum,
            "_enc_tuple": _enc_tuple,
        }
        self.structs: dict[type, type[msgspec.Struct]] = {}
        self.converters: dict[type, Callable[[Any], Any]] = {}
        self.encoders: dict[tuple[type, bool], Callable[[Any, bool], dict[str, Any]]] = {}
        self.sources: list[str] = []  # the generated code, kept for debugging
        for cls in classes:
            self._struct(cls)
        for cls in self.structs:
            self._converter(cls)
            self._encoder(cls, camel=True)
            self._encoder(cls, camel=False)

    def _struct(self, cls: type) -> type[msgspec.Struct]:
        if cls in self.structs:
            return self.structs[cls]
        camel: list[tuple[str, Any, None]] = []
        snake: list[tuple[str, Any, None]] = []
        for spec in fields_of(cls):
            wire: Any = _SCALAR_WIRE_TYPES.get(spec.kind) or self._struct(spec.target)
            if spec.repeated:
                wire = list[wire]
            first, *other = _keys(spec)
            camel.append((first, wire | None, None))
            snake.extend((key, wire | None, None) for key in other)
        rename = {_slot(key): key for key, _, _ in camel + snake if _slot(key) != key}
        camel = [(_slot(key), wire, default) for key, wire, default in camel]
        snake = [(_slot(key), wire, default) for key, wire, default in snake]
        # msgspec looks a key up fastest when it is the field after the previous one, so the order is
        # the proto's, camelCase keys first: the ``json`` dialect (the default) hits every time.
        fields = camel + snake
        # gc=False: wire structs live for one decode and hold no cycles, so untracked allocation is safe.
        struct = msgspec.defstruct(
            f"{cls.__name__}Wire", fields, kw_only=True, gc=False, rename=rename or None
        )
        self.structs[cls] = struct
        self.namespace[f"_C_{cls.__name__}"] = cls
        return struct

    def _converter(self, cls: type) -> None:
        name = cls.__name__
        lines = [f"def _c_{name}(s):"]
        for i, spec in enumerate(fields_of(cls)):
            camel, *snake = map(_slot, _keys(spec))
            lines.append(f"    v = s.{camel}")
            if snake:
                lines.append(f"    if v is None: v = s.{snake[0]}")
            self.namespace[f"_D_{name}_{i}"] = spec.default
            where = f"{name}.{spec.name}"
            # msgspec has checked the type of a single string or bool: nothing to convert
            if spec.kind in (WireType.STRING, WireType.BOOL) and not spec.repeated:
                lines.append(f"    f{i} = _D_{name}_{i} if v is None else v")
                continue
            lines.append(f"    if v is None: f{i} = _D_{name}_{i}")
            lines.append("    else:")
            if spec.repeated and spec.target is m.Order:
                lines.append(f"        f{i} = _levels(v)")
            elif spec.repeated and spec.kind in (WireType.STRING, WireType.BOOL):
                lines.append(f"        f{i} = tuple(v)")
            elif spec.repeated:
                lines.append(f"        f{i} = []")
                lines.append("        for x in v:")
                lines.extend("            " + line for line in self._convert(spec, where, "x", "y"))
                lines.append(f"            f{i}.append(y)")
                lines.append(f"        f{i} = tuple(f{i})")
            else:
                lines.extend("        " + line for line in self._convert(spec, where, "v", f"f{i}"))
        lines.extend(self._construct(cls))
        self.converters[cls] = self._compile("\n".join(lines), f"_c_{name}")

    def _convert(self, spec: FieldSpec, where: str, v: str, out: str) -> list[str]:
        fmt: dict[str, Any] = {"out": out, "v": v, "where": where}
        if spec.kind is WireType.ENUM:
            names, numbers = f"_T_{spec.target.__name__}", f"_N_{spec.target.__name__}"
            self.namespace[names] = {member.name: member for member in spec.target}
            self.namespace[numbers] = {member.value: member for member in spec.target}
            fmt |= {"names": names, "numbers": numbers, "zero": f"{numbers}[0]"}
        elif spec.kind is WireType.MESSAGE:
            fmt["converter"] = f"_c_{spec.target.__name__}"
        return _CONVERT[spec.kind].format(**fmt).splitlines()

    def _construct(self, cls: type) -> list[str]:
        """Code that builds the instance from f0, f1, ...

        A frozen attrs ``__init__`` sets each field through ``object.__setattr__``, which costs more
        than all the decoding around it. Instead the fields are stored into a plain mutable class
        with the same slots (specialised, near-free attribute stores), and the object's class is then
        switched to the model class: Python allows ``__class__`` assignment between classes of
        identical layout, and the result is indistinguishable from one built by ``__init__``
        (about 2.5x cheaper). A class with converters or validators is built through its ``__init__``
        so that they run; the switch is tried once here and the slot descriptors are used if it fails.
        """
        name, fields = cls.__name__, attrs.fields(cls)
        if any(f.converter or f.validator for f in fields):
            args = ", ".join(f"{f.name}=f{i}" for i, f in enumerate(fields))
            return [f"    return _C_{name}({args})"]
        builder = type(f"{name}Builder", (), {"__slots__": tuple(f.name for f in fields)})
        try:
            probe: Any = object.__new__(builder)
            probe.__class__ = cls
        except TypeError:  # pragma: no cover - only if a model class gains a __weakref__ or __dict__
            lines = [f"    o = _new(_C_{name})"]
            for i, field in enumerate(fields):
                self.namespace[f"_S_{name}_{i}"] = getattr(cls, field.name).__set__
                lines.append(f"    _S_{name}_{i}(o, f{i})")
            return [*lines, "    return o"]
        self.namespace[f"_B_{name}"] = builder
        lines = [f"    o = _new(_B_{name})"]
        lines += [f"    o.{field.name} = f{i}" for i, field in enumerate(fields)]
        return [*lines, f"    o.__class__ = _C_{name}", "    return o"]

    def _encoder(self, cls: type, *, camel: bool) -> None:
        name = cls.__name__
        fn = f"_e_{name}_{'camel' if camel else 'snake'}"
        lines = [f"def {fn}(o, full):", "    d = {}"]
        for i, spec in enumerate(fields_of(cls)):
            key = spec.json_name if camel else _proto_name(spec)
            where = f"{name}.{spec.name}"
            lines.append(f"    v = o.{spec.name}")
            fmt: dict[str, Any] = {"where": where + ("[]" if spec.repeated else "")}
            if spec.kind is WireType.ENUM:
                fmt["target"] = f"_C_{spec.target.__name__}"
                self.namespace[fmt["target"]] = spec.target
            elif spec.kind is WireType.MESSAGE:
                fmt["encoder"] = f"_e_{spec.target.__name__}_{'camel' if camel else 'snake'}"
            if spec.repeated:
                item = _ENCODE[spec.kind].format(v="x", **fmt)
                lines.append(
                    f"    if full or v != (): d[{key!r}] = [{item} for x in _enc_tuple(v, {where!r})]"
                )
            elif spec.nullable:
                lines.append(f"    if v is not None: d[{key!r}] = {_ENCODE[spec.kind].format(v='v', **fmt)}")
            else:
                # A default value is left out, unless its type is wrong: then the encoder must complain.
                lines.append(f"    if full or v != _D_{name}_{i} or type(v) is not type(_D_{name}_{i}):")
                lines.append(f"        d[{key!r}] = {_ENCODE[spec.kind].format(v='v', **fmt)}")
        lines.append("    return d")
        self.encoders[(cls, camel)] = self._compile("\n".join(lines), fn)

    def _compile(self, source: str, name: str) -> Any:
        self.sources.append(source)
        return _exec(source, name, self.namespace)


def _exec(source: str, name: str, namespace: dict[str, Any]) -> Any:
    """Define the function ``name`` from generated ``source`` in ``namespace``; returns it.

    The source is registered in ``linecache`` under a file name of its own, so that a traceback
    through generated code shows the generated lines (as cattrs does).
    """
    filename = f"<rxinvest.wire generated {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102
    return namespace[name]


# --- streams: which payload keys each stream carries --------------------------------------------------

# Each stream's oneof members, most frequent first (the dispatcher tries them in this order).
_RESPONSES: dict[Stream, tuple[type, ...]] = {
    Stream.MARKET_DATA: (
        m.OrderBook,
        m.Trade,
        m.LastPrice,
        m.Candle,
        m.TradingStatus,
        m.OpenInterest,
        m.Ping,
        m.SubscribeOrderBookResponse,
        m.SubscribeTradesResponse,
        m.SubscribeLastPriceResponse,
        m.SubscribeCandlesResponse,
        m.SubscribeInfoResponse,
    ),
    Stream.ORDER_STATE: (m.OrderState, m.Ping, m.SubscriptionResponse),
    Stream.TRADES: (m.OrderTrades, m.Ping, m.SubscriptionResponse),
    Stream.PORTFOLIO: (m.PortfolioResponse, m.Ping, m.PortfolioSubscriptionResult),
    Stream.POSITIONS: (m.PositionData, m.Ping, m.PositionsResponse, m.PositionsSubscriptionResult),
}
_RESPONSES[Stream.MARKET_DATA_SERVER_SIDE] = _RESPONSES[Stream.MARKET_DATA]

# The proto name of the oneof member carrying each class, where it is not the class name in snake_case.
_MEMBER_NAMES: dict[type, str] = {
    m.OrderBook: "orderbook",
    m.SubscriptionResponse: "subscription",
    m.PortfolioSubscriptionResult: "subscriptions",
    m.PositionsSubscriptionResult: "subscriptions",
    m.PortfolioResponse: "portfolio",
    m.PositionData: "position",
    m.PositionsResponse: "initial_positions",
    m.PingRequest: "ping",
    m.PingDelaySettings: "ping_settings",
}

# MarketDataStream requests are a oneof; the other streams take one plain request object.
_MARKET_DATA_REQUESTS: tuple[type, ...] = (
    m.SubscribeOrderBookRequest,
    m.SubscribeTradesRequest,
    m.SubscribeLastPriceRequest,
    m.SubscribeCandlesRequest,
    m.SubscribeInfoRequest,
    m.GetMySubscriptions,
    m.PingRequest,
    m.PingDelaySettings,
)
_PLAIN_REQUESTS: dict[Stream, type] = {
    Stream.MARKET_DATA_SERVER_SIDE: m.MarketDataServerSideStreamRequest,
    Stream.ORDER_STATE: m.OrderStateStreamRequest,
    Stream.TRADES: m.TradesStreamRequest,
    Stream.PORTFOLIO: m.PortfolioStreamRequest,
    Stream.POSITIONS: m.PositionsStreamRequest,
}


class UnaryTypes(NamedTuple):
    """The request and the response class of a unary method."""

    request: type
    response: type


#: Each unary method's request and response classes: the one table the codec and the simulator read.
UNARY_TYPES: Mapping[Unary, UnaryTypes] = MappingProxyType({
    Unary.GET_ORDERS: UnaryTypes(m.GetOrdersRequest, m.GetOrdersResponse),
    Unary.GET_ORDER_STATE: UnaryTypes(m.GetOrderStateRequest, m.OrderSnapshot),
    Unary.GET_OPERATIONS_BY_CURSOR: UnaryTypes(
        m.GetOperationsByCursorRequest, m.GetOperationsByCursorResponse
    ),
    Unary.GET_POSITIONS: UnaryTypes(m.GetPositionsRequest, m.PositionsResponse),
    Unary.GET_PORTFOLIO: UnaryTypes(m.PortfolioRequest, m.PortfolioResponse),
})  # fmt: skip

# The generated code covers exactly what these tables reach: the top-level messages and, through their
# fields, every message nested in them. A class elsewhere in the model (or a derived event in
# rxinvest.derived) is never read, so nothing outside the contract can break this import.
_CODE = _Generated(
    (*dict.fromkeys(c for classes in _RESPONSES.values() for c in classes), *_MARKET_DATA_REQUESTS,
     *_PLAIN_REQUESTS.values(), m.RpcStatus,  # RpcStatus: the in-band error of every stream
     *dict.fromkeys(c for types in UNARY_TYPES.values() for c in types))
)  # fmt: skip


def _member_name(cls: type) -> str:
    if cls in _MEMBER_NAMES:
        return _MEMBER_NAMES[cls]
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in cls.__name__).lstrip("_")


class _Oneof:
    """Decodes a frame whose top level is a oneof: one struct with a field per member key.

    The generated ``decode`` tries the members in order; having found one set, it checks that the
    members after it are unset (those before it are known to be), since a oneof holds one member.
    """

    # Keys of the in-band error forms, read only when no member is set.
    _ERROR_KEYS = ("result", "error", "code", "message")

    def __init__(self, name: str, classes: tuple[type, ...]) -> None:
        self.name = name
        members: list[tuple[str, type]] = []
        for cls in classes:
            proto = _member_name(cls)
            members.extend((key, cls) for key in dict.fromkeys((json_name(proto), proto)))
        fields: list[tuple[str, Any, Any]] = [(key, _CODE.structs[cls] | None, None) for key, cls in members]
        # Kept raw (an empty Raw when absent): parsed only when a frame has no member.
        fields += [(key, msgspec.Raw, msgspec.Raw()) for key in self._ERROR_KEYS]
        struct = msgspec.defstruct(f"{name}Wire", fields, kw_only=True, gc=False)
        namespace: dict[str, Any] = {
            "_decode": msgspec.json.Decoder(struct).decode,
            "_more": self._more_than_one,
            "_fallback": self._error_forms,
        }
        lines = [f"def decode_{name}(data):", "    t = _decode(data)"]
        for i, (key, cls) in enumerate(members):
            namespace[f"_c{i}"] = _CODE.converters[cls]
            rest = " or ".join(f"t.{other} is not None" for other, _ in members[i + 1 :]) or "False"
            lines += [f"    v = t.{key}", "    if v is not None:", f"        if {rest}: _more(t)"]
            lines.append(f"        return _c{i}(v)")
        lines.append("    return _fallback(t, data)")
        self.decode: Callable[[Any], Any] = _exec("\n".join(lines), f"decode_{name}", namespace)
        self.members = members

    def _more_than_one(self, top: Any) -> None:
        keys = ", ".join(key for key, _ in self.members if getattr(top, key) is not None)
        raise _Malformed(f"more than one payload key: {keys}")

    def _error_forms(self, top: Any, data: Any) -> Any:
        if _present(top.result):  # the grpc-gateway wrapping of a stream message
            return self.decode(top.result)
        if _present(top.error):
            return _status(top.error)
        if _present(top.code) and _present(top.message):
            return _status(data)
        raise _Malformed(f"no {self.name} payload key in the frame")


def _present(raw: msgspec.Raw) -> bool:
    return len(raw) > 0 and bytes(raw) != b"null"


_status_decoder = msgspec.json.Decoder(_StatusWire)


def _status(data: Any) -> m.RpcStatus:
    wire = _status_decoder.decode(data)
    code = wire.code if wire.code is not None else wire.grpcCode
    return m.RpcStatus(
        code=0 if code is None else _int(code, "error.code", _I32_MIN, _I32_MAX),
        message=wire.message or "",
        details=tuple(msgspec.json.encode(d, order="sorted").decode() for d in wire.details or ()),
    )


class _Plain:
    """Decodes a frame that is one plain message (the account streams' requests)."""

    def __init__(self, cls: type) -> None:
        self.name = cls.__name__
        parse, convert = msgspec.json.Decoder(_CODE.structs[cls]).decode, _CODE.converters[cls]
        self.decode: Callable[[Any], Any] = lambda data: convert(parse(data))


# The generated functions, keyed by plain str (not Stream): the hot path looks them up per frame.
_RESPONSE_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    stream.value: _Oneof(stream.value, classes).decode for stream, classes in _RESPONSES.items()
}
_REQUEST_DECODERS: dict[str, _Oneof | _Plain] = {
    Stream.MARKET_DATA: _Oneof("MarketDataRequest", _MARKET_DATA_REQUESTS),
    **{stream: _Plain(cls) for stream, cls in _PLAIN_REQUESTS.items()},
}


def _run(decoder: Callable[[Any], Any], data: Any, what: str) -> Any:
    """Call ``decoder(data)``, turning every failure into a ``DecodeError`` that quotes ``data``."""
    try:
        return decoder(data)
    except (_Malformed, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"{what}: {exc}", _raw(data)) from None
    except Exception as exc:  # int() of a bad digit string, data that is not text, recursion ...
        raise DecodeError(f"{what}: {type(exc).__name__}: {exc}", _raw(data)) from exc


def _raw(data: Any) -> str | bytes | bytearray | memoryview:
    return data if isinstance(data, str | bytes | bytearray | memoryview) else repr(data)


def decode(data: str | bytes | bytearray | memoryview, *, stream: str) -> Message:
    """Decode one server frame of ``stream`` (a proxy method name such as ``"MarketDataStream"``).

    Returns the payload: a ``Candle``, ``OrderBook``, ``Ping``, ``OrderState``, ``PositionData``,
    a ``Subscribe*Response`` ... or an :class:`~rxinvest.model.RpcStatus` for an in-band stream
    error (a top-level ``code``/``message`` object or an ``error`` wrapper). A ``result`` wrapper is
    unwrapped. Either dialect is read. Thread-safe.

    Raises :class:`~rxinvest.errors.DecodeError` (with a truncated copy of ``data``) for anything
    malformed, and :class:`~rxinvest.errors.ConfigurationError` for an unknown ``stream``.
    """
    function = _RESPONSE_FUNCTIONS.get(stream)
    if function is None:
        function = _RESPONSE_FUNCTIONS[Stream.parse(stream).value]
    try:
        return function(data)
    except Exception:  # keep the common path free of the extra call into _run
        return _run(function, data, stream)


def decoder(stream: str) -> Callable[[str | bytes | bytearray | memoryview], Message]:
    """``decode`` bound to one stream: the same result and errors, without the per-call lookup.

    For readers that decode every frame of one connection.
    """
    function = _RESPONSE_FUNCTIONS[Stream.parse(stream).value]

    def decode_frame(data: str | bytes | bytearray | memoryview) -> Message:
        try:
            return function(data)
        except Exception:
            return _run(function, data, stream)

    return decode_frame


def decode_request(data: str | bytes | bytearray | memoryview, *, stream: str) -> Message:
    """Decode one client frame of ``stream`` (what a server receives): the inverse of :func:`encode`.

    For MarketDataStream, returns the oneof payload (``SubscribeCandlesRequest``, ``PingRequest``,
    ``GetMySubscriptions`` ...); for the other streams, their single request object. Raises like
    :func:`decode`.
    """
    decoder = _REQUEST_DECODERS[Stream.parse(stream)]
    return _run(decoder.decode, data, f"{stream} request")


def load(cls: type, data: Any) -> Any:
    """Build a ``cls`` instance from an already parsed JSON value (either key style).

    Raises :class:`~rxinvest.errors.DecodeError` if ``data`` does not fit ``cls``, and
    :class:`~rxinvest.errors.ConfigurationError` if ``cls`` is not a message of the wire contract.
    """
    struct = _CODE.structs.get(cls)
    if struct is None:
        raise ConfigurationError(f"{cls!r} is not a wire message class")
    convert = _CODE.converters[cls]
    return _run(lambda d: convert(msgspec.convert(d, struct)), data, cls.__name__)


def dump(value: Message, *, dialect: str = "json", include_defaults: bool = False) -> dict[str, Any]:
    """The JSON object of one model value, without oneof wrapping.

    Fields holding proto3 defaults are left out unless ``include_defaults``. Raises
    :class:`~rxinvest.errors.EncodeError` for values that have no wire form.
    """
    encoder = _CODE.encoders.get((type(value), Dialect.parse(dialect) is Dialect.JSON))
    if encoder is None:
        raise EncodeError(f"{type(value).__name__} is not a wire message")
    return encoder(value, include_defaults)


def _wrapper_key(cls: type, dialect: str) -> str | None:
    """The top-level oneof key that carries ``cls``, or None for a plain request object."""
    if cls in _PLAIN_REQUESTS.values():
        return None
    if cls in _MARKET_DATA_REQUESTS or any(cls in classes for classes in _RESPONSES.values()):
        proto = _member_name(cls)
        return json_name(proto) if dialect == Dialect.JSON else proto
    raise EncodeError(f"{cls.__name__} is not a top-level message of any stream")


def encode(value: Message, *, dialect: str = "json", include_defaults: bool = False) -> str:
    """Encode one top-level message as a JSON text frame.

    Requests: a MarketDataStream payload (``SubscribeCandlesRequest``, ``PingRequest`` ...) is
    wrapped in its ``MarketDataRequest`` oneof key; the account streams' requests are plain objects.
    Responses (the simulator sends them): an event is wrapped in its stream's oneof key
    (``{"orderbook": {...}}``). ``dialect`` picks the key style; proto3 defaults are left out unless
    ``include_defaults``. Raises :class:`~rxinvest.errors.EncodeError` for values with no wire form
    (naive datetimes, more than 9 decimal places, out-of-range ints, wrong attribute types).
    """
    body = dump(value, dialect=dialect, include_defaults=include_defaults)
    key = _wrapper_key(type(value), dialect)
    return msgspec.json.encode(body if key is None else {key: body}).decode()


# --- unary methods over REST ----------------------------------------------------------------------------
#
# The REST gateway takes and gives plain message objects (no oneof wrapping), in the proto3 JSON
# mapping: requests are written with lowerCamelCase keys, which it accepts, and without default values;
# answers are read in either key style, by the same generated code as the streams.

Body = str | bytes | bytearray | memoryview

_UNARY_CLASSES: frozenset[type] = frozenset(c for types in UNARY_TYPES.values() for c in types)
_UNARY_REQUESTS: dict[Unary, _Plain] = {
    method: _Plain(types.request) for method, types in UNARY_TYPES.items()
}
_UNARY_RESPONSES: dict[Unary, _Plain] = {
    method: _Plain(types.response) for method, types in UNARY_TYPES.items()
}


def _unary(method: str) -> Unary:
    try:
        return Unary(method)
    except ValueError:
        valid = ", ".join(u.value for u in Unary)
        raise ConfigurationError(f"unknown unary method {method!r}; expected one of: {valid}") from None


def encode_unary(message: Message, *, include_defaults: bool = False) -> bytes:
    """The JSON body of a unary request (or, for the simulator, of a response): a plain object with
    lowerCamelCase keys, proto3 defaults left out unless ``include_defaults``. A keyword-named field
    keeps its proto name on the wire (``from_`` is written ``"from"``).

    Raises :class:`~rxinvest.errors.EncodeError` for a class that is no unary request or response, and
    for values with no wire form (naive datetimes, more than 9 decimal places, out-of-range ints).
    """
    if type(message) not in _UNARY_CLASSES:
        raise EncodeError(f"{type(message).__name__} is not a request or response of a unary method")
    return msgspec.json.encode(dump(message, include_defaults=include_defaults))


@overload
def decode_unary(method: Literal[Unary.GET_ORDERS], body: Body) -> m.GetOrdersResponse: ...
@overload
def decode_unary(method: Literal[Unary.GET_ORDER_STATE], body: Body) -> m.OrderSnapshot: ...
@overload
def decode_unary(
    method: Literal[Unary.GET_OPERATIONS_BY_CURSOR], body: Body
) -> m.GetOperationsByCursorResponse: ...
@overload
def decode_unary(method: Literal[Unary.GET_POSITIONS], body: Body) -> m.PositionsResponse: ...
@overload
def decode_unary(method: Literal[Unary.GET_PORTFOLIO], body: Body) -> m.PortfolioResponse: ...
@overload
def decode_unary(method: Unary | str, body: Body) -> Message: ...
def decode_unary(method: Unary | str, body: Body) -> Message:
    """The answer of ``method`` from a successful (HTTP 200) response body: its response class of
    :data:`UNARY_TYPES` (``GetOrderState``: an :class:`~rxinvest.model.OrderSnapshot`).

    Either key style is read; unknown keys are ignored, so check the HTTP status first (an error body
    decodes as an empty answer: read it with :func:`decode_unary_error`). Raises
    :class:`~rxinvest.errors.DecodeError` (quoting the body) for anything malformed, a body that is no
    JSON object included, and :class:`~rxinvest.errors.ConfigurationError` for an unknown method.
    Thread-safe.
    """
    method = _unary(method)
    return _run(_UNARY_RESPONSES[method].decode, body, f"{method.value} response")


def decode_unary_request(method: Unary | str, body: Body) -> Message:
    """The request of ``method`` from a request body (what a server receives): the inverse of
    :func:`encode_unary`. Raises like :func:`decode_unary`; a missing field is its default, so a
    required field's presence is the server's to check."""
    method = _unary(method)
    return _run(_UNARY_REQUESTS[method].decode, body, f"{method.value} request")


#: The gRPC status code an error body without one is given: UNKNOWN.
_UNKNOWN = 2


def decode_unary_error(body: Body) -> m.RpcStatus:
    """The error of a failed REST call, from its body; never raises.

    The gateway answers ``{"code": <gRPC code>, "message": "<API error code>", "description":
    "<text>"}`` (grpc-gateway's ``google.rpc.Status`` shape, ``details`` possibly too):
    ``RpcStatus.code`` is the gRPC code and ``message`` the API code ("40003"); the description, if
    any, becomes the first of ``details``, as the compact JSON object ``{"description": ...}``, and
    the body's own ``details`` follow. A body that is no such object (an HTML page from a proxy, an
    empty body) gives ``code`` 2 (UNKNOWN) and its text, at most ``RAW_LIMIT`` characters, as
    ``message``: the HTTP status, which the caller has, says the rest.
    """
    try:
        data = msgspec.json.decode(bytes(body.encode() if isinstance(body, str) else body))
    except (msgspec.DecodeError, TypeError, ValueError):
        data = None
    if isinstance(data, dict) and ("code" in data or "grpcCode" in data or "message" in data):
        code = _status_code(data.get("code", data.get("grpcCode")))
        message = data.get("message")
        description = data.get("description")
        details = [{"description": description}] if isinstance(description, str) and description else []
        if isinstance(data.get("details"), list):
            details += data["details"]
        return m.RpcStatus(
            code=code,
            message=message if isinstance(message, str) else "" if message is None else _compact(message),
            details=tuple(_compact(d) for d in details),
        )
    text = _text(body).strip()
    return m.RpcStatus(code=_UNKNOWN, message=text[:RAW_LIMIT])


def _status_code(value: object) -> int:
    """A gRPC code from the wire (a number, or its digits as text); UNKNOWN for anything else."""
    if type(value) is str and value.isascii() and value.isdigit():
        value = int(value)
    return value if type(value) is int and 0 <= value <= _I32_MAX else _UNKNOWN


def _compact(value: object) -> str:
    return msgspec.json.encode(value, order="sorted").decode()


def _text(body: Body) -> str:
    if isinstance(body, str):
        return body
    return bytes(body).decode("utf-8", errors="replace")


def encode_unary_error(code: int, message: str, description: str = "") -> bytes:
    """The body of a failed REST call, as the gateway writes it (what :func:`decode_unary_error`
    reads): ``code`` the gRPC status code, ``message`` the API error code as text."""
    return msgspec.json.encode({"code": code, "message": message, "description": description})


_STRING = msgspec.json.Encoder()


def json_string(data: bytes) -> str:
    """``data`` as a JSON string literal (quotes included) that gives back these very bytes: UTF-8
    as is, through msgspec's escaper (about 4 µs for a 3 KB book frame, a third of json's); bytes
    that are not valid UTF-8 as an ASCII string of their surrogate escapes (decode it, then
    ``.encode("utf-8", "surrogateescape")``). For recordings of raw frames."""
    text = data.decode("utf-8", "surrogateescape")
    try:
        return _STRING.encode(text).decode()
    except UnicodeEncodeError:  # surrogate escapes: not UTF-8
        return encode_basestring_ascii(text)


_OBJECT = msgspec.json.Decoder()


def json_value(data: bytes | str) -> Any:
    """One JSON text parsed to plain Python values (dicts, lists, str, int, float, bool, None),
    through msgspec (about a third of ``json.loads``' time for a recording's line). Raises
    ``ValueError`` if it is not JSON; a string holding a lone surrogate escape (a recording's
    frame that was not UTF-8) is read as ``json`` reads it. For recordings of raw frames."""
    try:
        return _OBJECT.decode(data)
    except msgspec.DecodeError as exc:
        if (
            b"\\ud"
            not in (data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")).lower()
        ):
            raise ValueError(str(exc)) from None
    return json.loads(data)
