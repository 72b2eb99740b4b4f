"""What the codec needs to know about each model class, read once from its attrs fields.

The model declares proto semantics through plain annotations (``Decimal`` is a Quotation, ``Money`` a
MoneyValue, ``tuple[X, ...]`` a repeated field, ``X | None`` explicit presence) and marks int32 fields
in metadata; this module turns that into a flat list of :class:`FieldSpec` per class.
"""

from __future__ import annotations

import enum
import types
import typing
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import attrs

from rxinvest.model.common import INT32, Money

__all__ = ["FieldSpec", "WireType", "fields_of", "json_name"]


class WireType(enum.Enum):
    STRING = "string"
    BOOL = "bool"
    INT64 = "int64"  # a JSON string on the wire
    INT32 = "int32"  # a JSON number on the wire
    QUOTATION = "quotation"  # Decimal <-> {"units": "<int64>", "nano": <int32>}
    MONEY = "money"  # Money <-> {"currency", "units", "nano"}
    TIMESTAMP = "timestamp"  # aware UTC datetime <-> RFC 3339 string
    ENUM = "enum"  # Enum <-> value name
    MESSAGE = "message"  # nested attrs class <-> object


@attrs.frozen
class FieldSpec:
    name: str  # proto field name, the attribute name and the ``json-proto`` key
    json_name: str  # lowerCamelCase key of the ``json`` dialect
    kind: WireType
    repeated: bool
    nullable: bool  # ``None`` means "absent" (messages, timestamps, proto3 optional scalars)
    target: Any  # the enum or message class, else None
    default: Any  # the value an absent key decodes to


def json_name(proto_name: str) -> str:
    """The proto3 JSON name of a field: lowerCamelCase of its proto name."""
    head, *rest = proto_name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@cache
def fields_of(cls: type) -> tuple[FieldSpec, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(_spec(cls, field, hints[field.name]) for field in attrs.fields(cls))


def _spec(cls: type, field: attrs.Attribute[Any], hint: Any) -> FieldSpec:
    nullable = False
    if isinstance(hint, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"{cls.__name__}.{field.name}: unsupported union {hint}")
        hint, nullable = args[0], True
    repeated = typing.get_origin(hint) is tuple
    if repeated:
        hint = typing.get_args(hint)[0]
    kind = _kind(cls, field, hint)
    target = hint if kind in (WireType.ENUM, WireType.MESSAGE) else None
    default = field.default
    return FieldSpec(field.name, json_name(field.name), kind, repeated, nullable, target, default)


def _kind(cls: type, field: attrs.Attribute[Any], hint: Any) -> WireType:
    if hint is str:
        return WireType.STRING
    if hint is bool:
        return WireType.BOOL
    if hint is int:
        return WireType.INT32 if field.metadata.get(INT32) else WireType.INT64
    if hint is Decimal:
        return WireType.QUOTATION
    if hint is Money:
        return WireType.MONEY
    if hint is datetime:
        return WireType.TIMESTAMP
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return WireType.ENUM
    if attrs.has(hint):
        return WireType.MESSAGE
    raise TypeError(f"{cls.__name__}.{field.name}: no wire mapping for {hint!r}")
