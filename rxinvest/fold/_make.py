"""Fast constructors of derived events, for folds that make one per input on a hot path.

A frozen attrs ``__init__`` takes keywords and stores each field through ``object.__setattr__``:
about 1.4 µs for a class of ten fields, often more than the fold's own work for the event. Calling
the slot descriptors instead costs about 50 ns a field. :func:`positional` does better: it fills
the object in as an instance of a private subclass that keeps the class's very layout (no slot of
its own) but has ``object``'s ``__setattr__`` and ``__delattr__`` (CPython then stores a slot
inline, about 5 ns; with only one of the two it takes its slow path), then assigns the class's
``__class__``. The result is the object ``__init__`` makes (same type, equal, same hash and repr,
still frozen): :func:`positional` checks that once per class, with a trial object, and else tries
the slot descriptors, then falls back to ``__init__``. Only while the class's fields are exactly
the ones named, with no converter, validator or factory to run; otherwise (the class changed) the
constructor is ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = ["positional"]

_T = TypeVar("_T")


def _plain(cls: type, names: tuple[str, ...]) -> bool:
    """Whether ``cls`` is a slotted attrs class whose fields are ``names`` and whose ``__init__``
    does nothing but store them."""
    if not attrs.has(cls) or "__slots__" not in cls.__dict__:
        return False
    fields = attrs.fields(cls)
    return (
        {f.name for f in fields} == set(names)
        and len(fields) == len(names)
        and not any(f.converter or f.validator or not f.init for f in fields)
    )


def _compile(names: tuple[str, ...], body: list[str], namespace: dict[str, Any]) -> Callable[..., Any]:
    lines = [f"def make({', '.join(names)}):", *body, "    return made"]
    exec("\n".join(lines), namespace)  # noqa: S102 - names are checked identifiers: the source is ours
    made: Callable[..., Any] = namespace["make"]
    return made


def _faithful(make: Callable[..., Any], cls: type, names: tuple[str, ...]) -> bool:
    """Whether ``make`` makes the very object ``__init__`` makes, on a trial object (its fields are
    fresh objects, compared by identity: equal only if every field landed)."""
    trial = [object() for _ in names]
    try:
        made = make(*trial)
        reference = cls(**dict(zip(names, trial, strict=True)))
        return (
            type(made) is cls
            and made == reference
            and repr(made) == repr(reference)
            and (cls.__hash__ is None or hash(made) == hash(reference))  # e.g. a cached hash's slot
        )
    except Exception:  # a Python refusing the __class__ assignment, an unset slot
        return False


def _swapped(cls: type, names: tuple[str, ...]) -> Callable[..., Any]:
    """The constructor through a private subclass (see the module)."""
    unfrozen = type(
        f"_Unfrozen{cls.__name__}",
        (cls,),
        {"__slots__": (), "__setattr__": object.__setattr__, "__delattr__": object.__delattr__},
    )
    body = ["    made = _new(_unfrozen)", *(f"    made.{name} = {name}" for name in names)]
    body.append("    made.__class__ = _cls")
    return _compile(names, body, {"_new": object.__new__, "_unfrozen": unfrozen, "_cls": cls})


def _descriptors(cls: type, names: tuple[str, ...]) -> Callable[..., Any]:
    """The constructor through the slot descriptors."""
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    namespace.update({f"_set_{name}": getattr(cls, name).__set__ for name in names})
    body = ["    made = _new(_cls)", *(f"    _set_{name}(made, {name})" for name in names)]
    return _compile(names, body, namespace)


def positional(cls: type[_T], names: tuple[str, ...]) -> Callable[..., _T]:
    """A constructor of ``cls`` taking its fields positionally, in the order of ``names``."""
    if not all(name.isidentifier() for name in names):
        raise ValueError(f"not field names: {names!r}")

    def slow(*values: Any) -> _T:
        return cls(**dict(zip(names, values, strict=True)))

    if not _plain(cls, names):
        return slow
    for way in _WAYS:
        make = way(cls, names)
        if _faithful(make, cls, names):
            return make
    return slow


#: The ways :func:`positional` tries, fastest first (a test may replace it).
_WAYS: tuple[Callable[[type, tuple[str, ...]], Callable[..., Any]], ...] = (_swapped, _descriptors)
