"""Events as pandas DataFrames, and back: one row per event, one column per attribute.

Rules of this module:

* **Columns** are the event class's attributes, in declaration order, named as the attributes are
  (the proto field names for wire events). A nested value object is flattened into
  ``<attribute>.<its attribute>`` columns (money: ``commission.amount`` and ``commission.currency``);
  a nested object that is absent (None) leaves all of its columns empty. A repeated value (a tuple:
  book levels, an order's trades), a set (a book's problems) or a mapping stays in one column
  holding the value itself; :func:`book_levels` gives book levels as a long frame.
* **Types.** ``Decimal`` stays ``Decimal`` (``object`` columns, exact) unless
  ``decimals="float"``; ints are ``int64`` (``Int64`` when they may be absent); floats ``float64``
  (absent: NaN); bools ``bool`` (``boolean`` when they may be absent); instants
  ``datetime64[us, UTC]`` (absent: NaT); enums categoricals of their members' names (the proto value
  names); anything else an ``object`` column of the values.
* **Index.** Where an event has a time (its ``time`` attribute, else its first required instant,
  such as a bar's ``start``, else its first instant, such as an order's ``created_at``) it is the
  frame's index, a UTC ``DatetimeIndex`` named after it (NaT where absent), and not also a column;
  else a ``RangeIndex``.
* **Computed properties** of a class (a quote's ``mid``, ``spread`` ...) follow its attributes as
  columns, for reading (empty where the arithmetic fails, as with a zero increment);
  :func:`from_dataframe` ignores them.
* **Empty input** gives an empty frame with every column and its type: the event type then comes
  from ``of``. Events of another type than ``of`` (markers among the events, say) are left out; with
  no ``of``, events of several types are refused (:class:`~rxinvest.errors.ConfigurationError`
  names them).
* :func:`from_dataframe` is the inverse: ``from_dataframe(to_dataframe(events), of=type(e)) ==
  events`` for every event type, Decimals exact. From a ``decimals="float"`` frame, Decimals come
  back from the floats' shortest repr.
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import attrs
import pandas as pd

from rxinvest.errors import ConfigurationError

__all__ = ["book_levels", "from_dataframe", "to_dataframe"]

Decimals = Literal["decimal", "float"]


@attrs.frozen
class _Column:
    """One column of a class's frame: its name, the path of attributes to its value, its kind."""

    name: str
    path: tuple[str, ...]
    kind: str  # decimal, int, float, bool, datetime, enum, str, object, present
    optional: bool  # the attribute may be None
    enum_type: type[enum.Enum] | None = None
    nullable: bool = False  # it or a nested object it is in may be None: its dtype says so
    # Where a nested object starts, the path of that object and its class (to rebuild it).
    parents: tuple[tuple[tuple[str, ...], type, bool], ...] = ()


@attrs.frozen
class _Schema:
    cls: type
    columns: tuple[_Column, ...]
    index: _Column | None
    properties: tuple[str, ...]


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (it, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)):
            return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), True  # noqa: UP007
    return hint, False


_KINDS: dict[Any, str] = {
    Decimal: "decimal",
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    datetime: "datetime",
}


def _kind(hint: Any) -> tuple[str, type[enum.Enum] | None]:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "enum", hint
    return _KINDS.get(hint, "object"), None


@functools.cache
def _schema(cls: type) -> _Schema:
    if not attrs.has(cls):
        raise ConfigurationError(f"{cls!r} is not an rxinvest event class (an attrs class)")
    columns = list(_columns(cls, (), ()))
    instants = [c for c in columns if len(c.path) == 1 and c.kind == "datetime"]
    index = (
        next((c for c in instants if c.name == "time"), None)
        or next((c for c in instants if not c.optional), None)
        or next(iter(instants), None)
    )
    if index is not None:
        columns.remove(index)
    properties = tuple(
        name for name, value in vars(cls).items() if isinstance(value, property) and not name.startswith("_")
    )
    return _Schema(cls, tuple(columns), index, properties)


@functools.cache
def _attributes(cls: type) -> tuple[tuple[str, Any, bool, bool], ...]:
    """Each attribute of ``cls``: its name, its type without ``None``, whether it may be None, and
    whether it is a nested value object (read once per class: both directions use it per row)."""
    hints = typing.get_type_hints(cls)
    attributes = []
    for field in attrs.fields(cls):
        hint, optional = _unwrap_optional(hints[field.name])
        attributes.append((field.name, hint, optional, isinstance(hint, type) and attrs.has(hint)))
    return tuple(attributes)


def _columns(
    cls: type, prefix: tuple[str, ...], parents: tuple[tuple[tuple[str, ...], type, bool], ...]
) -> Iterable[_Column]:
    for name, hint, optional, nested in _attributes(cls):
        path = (*prefix, name)
        if nested:  # a nested value object: flattened
            inner = list(_columns(hint, path, (*parents, (path, hint, optional))))
            if optional and all(c.optional for c in inner):
                # Its columns cannot tell it absent from present with nothing set: say which.
                above = any(parent_optional for _, _, parent_optional in parents)
                yield _Column(".".join(path), path, "present", False, parents=parents, nullable=above)
            yield from inner
            continue
        kind, enum_type = _kind(hint)
        nullable = optional or any(parent_optional for _, _, parent_optional in parents)
        yield _Column(".".join(path), path, kind, optional, enum_type, parents=parents, nullable=nullable)


def _value(event: Any, path: tuple[str, ...], kind: str = "") -> Any:
    if kind == "present":
        return _value(event, path) is not None
    for name in path:
        if event is None:
            return None
        event = getattr(event, name)
    return event


def _series(column: _Column, values: list[Any], decimals: Decimals) -> pd.Series:
    kind = column.kind
    if kind == "decimal" and decimals == "float":
        return pd.Series([None if v is None else float(v) for v in values], dtype="float64")
    if kind == "int":
        return pd.Series(values, dtype="Int64" if column.nullable else "int64")
    if kind in ("bool", "present"):
        return pd.Series(values, dtype="boolean" if column.nullable else "bool")
    if kind == "float":
        return pd.Series(values, dtype="float64")
    if kind == "datetime":
        return _times(values)
    if kind == "enum":
        assert column.enum_type is not None
        names = [None if v is None else v.name for v in values]
        return pd.Series(pd.Categorical(names, categories=[m.name for m in column.enum_type]))
    return pd.Series(values, dtype="object")


def _times(values: list[Any]) -> pd.Series:
    # Microseconds (what a datetime holds) over the whole datetime range, unlike nanoseconds.
    return pd.Series(pd.to_datetime(values, utc=True).as_unit("us"))


def _property(event: Any, name: str) -> Any:
    try:
        return getattr(event, name)
    except ArithmeticError:  # a quote with a zero increment, say: that cell is empty
        return None


def _single_type(events: list[Any], of: type | None) -> type | None:
    if of is not None:
        return of
    kinds = {type(e) for e in events}
    if len(kinds) > 1:
        counts = ", ".join(f"{k.__name__} ({sum(type(e) is k for e in events)})" for k in kinds)
        raise ConfigurationError(f"events of several types: {counts}; pass of= the type to keep")
    return next(iter(kinds), None)


def to_dataframe(
    events: Iterable[Any], *, of: type | None = None, decimals: Decimals = "decimal"
) -> pd.DataFrame:
    """The events as a DataFrame, one row each (the rules at the top of the module).

    ``of``: the event class (needed for empty input; events of other classes are left out).
    ``decimals``: ``"decimal"`` (exact, the default) or ``"float"`` (for plotting and arithmetic).
    Raises :class:`~rxinvest.errors.ConfigurationError` for empty input without ``of``, events of
    several types without ``of``, a class that is not an event class, or a bad ``decimals``.
    """
    if decimals not in ("decimal", "float"):
        raise ConfigurationError(f'decimals must be "decimal" or "float", not {decimals!r}')
    items = list(events)
    cls = _single_type(items, of)
    if cls is None:
        raise ConfigurationError("no events, and no of= to say their type: pass of=the event class")
    items = [e for e in items if type(e) is cls]
    schema = _schema(cls)
    data = {c.name: _series(c, [_value(e, c.path, c.kind) for e in items], decimals) for c in schema.columns}
    for name in schema.properties:
        data[name] = pd.Series([_property(e, name) for e in items], dtype="object")
    index: pd.Index[Any] | None = None
    if schema.index is not None:
        index = pd.DatetimeIndex(
            _times([getattr(e, schema.index.name) for e in items]), name=schema.index.name
        )
        for series in data.values():
            series.index = index
    frame = pd.DataFrame(data, index=index)
    if not data:
        frame = pd.DataFrame(index=index if index is not None else pd.RangeIndex(len(items)))
    frame.attrs["rxinvest_event"] = f"{cls.__module__}.{cls.__qualname__}"
    return frame


def _python(column: _Column, value: Any) -> Any:
    """A cell back to the attribute's value."""
    kind = column.kind
    if value is None or value is pd.NA or value is pd.NaT or (kind != "float" and value != value):
        return None  # absent (NaN: an absent category, say)
    if kind == "decimal":
        if isinstance(value, float):
            return None if value != value else Decimal(repr(value))  # NaN: absent
        return value
    if kind == "int":
        return int(value)
    if kind in ("bool", "present"):
        return bool(value)
    if kind == "float":
        return None if value != value and column.optional else float(value)
    if kind == "datetime":
        return value.to_pydatetime()
    if kind == "enum":
        assert column.enum_type is not None
        return column.enum_type[value]
    if kind == "str":
        return str(value)
    return value


def from_dataframe(frame: pd.DataFrame, *, of: type) -> list[Any]:
    """The events of a frame made by :func:`to_dataframe` (the rules at the top of the module).

    Raises :class:`~rxinvest.errors.ConfigurationError` if a column of ``of`` is missing.
    """
    schema = _schema(of)
    missing = [c.name for c in schema.columns if c.name not in frame.columns]
    if missing:
        raise ConfigurationError(f"the frame lacks the columns {missing} of {of.__name__}")
    columns = [(c, frame[c.name].astype(object).tolist()) for c in schema.columns]
    times = None
    if schema.index is not None:
        if not isinstance(frame.index, pd.DatetimeIndex):
            raise ConfigurationError(
                f"the frame's index is not the {of.__name__}s' {schema.index.name!r} (a DatetimeIndex, as "
                "to_dataframe makes it): set it back with frame.set_index(...)"
            )
        times = [None if pd.isna(t) else t.to_pydatetime() for t in frame.index]
    events = []
    for row in range(len(frame)):
        values: dict[tuple[str, ...], Any] = {}
        for column, cells in columns:
            values[column.path] = _python(column, cells[row])
        if times is not None and schema.index is not None:
            values[schema.index.path] = times[row]
        events.append(_build(of, (), values))
    return events


def _build(cls: type, prefix: tuple[str, ...], values: dict[tuple[str, ...], Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for name, hint, optional, nested in _attributes(cls):
        path = (*prefix, name)
        if nested:
            present = values.get(path)  # its own column, where its columns cannot tell (rule 1)
            inner = {p: v for p, v in values.items() if p[: len(path)] == path and p != path}
            if optional and (
                present is False or (present is None and all(v is None for v in inner.values()))
            ):
                kwargs[name] = None
            else:
                kwargs[name] = _build(hint, path, values)
        else:
            kwargs[name] = values[path]
    return cls(**kwargs)


def book_levels(books: Iterable[Any]) -> pd.DataFrame:
    """Order books as a long frame: one row per level of each snapshot, with the snapshot's time
    (the index), ``instrument_uid``, ``side`` ("bid"/"ask"), ``level`` (0 the best), ``price``
    (Decimal) and ``quantity`` (lots)."""
    rows: dict[str, list[Any]] = {
        k: [] for k in ("time", "instrument_uid", "side", "level", "price", "quantity")
    }
    for book in books:
        for side, levels in (("bid", book.bids), ("ask", book.asks)):
            for number, level in enumerate(levels):
                rows["time"].append(book.time)
                rows["instrument_uid"].append(book.instrument_uid)
                rows["side"].append(side)
                rows["level"].append(number)
                rows["price"].append(level.price)
                rows["quantity"].append(level.quantity)
    index = pd.DatetimeIndex(_times(rows.pop("time")), name="time")
    return pd.DataFrame(
        {
            "instrument_uid": pd.Series(rows["instrument_uid"], index=index, dtype="object"),
            "side": pd.Series(pd.Categorical(rows["side"], categories=["bid", "ask"]), index=index),
            "level": pd.Series(rows["level"], index=index, dtype="int64"),
            "price": pd.Series(rows["price"], index=index, dtype="object"),
            "quantity": pd.Series(rows["quantity"], index=index, dtype="int64"),
        },
        index=index,
    )
