"""Whatever arrives, decode returns an event or raises DecodeError, and nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest import wire
from rxinvest.errors import DecodeError
from rxinvest.testing.strategies import messages
from tests.wire.test_roundtrip import REQUESTS, RESPONSES

STREAMS = list(RESPONSES)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=25,
)


def _decodes_or_raises_decode_error(frame: str | bytes, stream: str, *, request: bool = False) -> None:
    try:
        (wire.decode_request if request else wire.decode)(frame, stream=stream)
    except DecodeError as exc:
        assert len(exc.raw) <= 257  # the raw copy is truncated
        assert str(exc)


@pytest.mark.parametrize("stream", STREAMS)
@given(value=json_values)
def test_arbitrary_json(stream: str, value: Any) -> None:
    _decodes_or_raises_decode_error(json.dumps(value), stream)
    _decodes_or_raises_decode_error(json.dumps(value), stream, request=True)


@pytest.mark.parametrize("stream", STREAMS)
@given(frame=st.binary(max_size=200))
def test_arbitrary_bytes(stream: str, frame: bytes) -> None:
    _decodes_or_raises_decode_error(frame, stream)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a parsed JSON value (the value itself included)."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], tuple(rest), new)
    return copy


@pytest.mark.parametrize(
    ("stream", "cls"),
    [(s, c) for s, classes in RESPONSES.items() for c in classes],
    ids=lambda x: getattr(x, "__name__", x),
)
@given(data=st.data())
def test_valid_frames_with_one_value_replaced(stream: str, cls: type, data: st.DataObject) -> None:
    """Mutations of real frames reach deep into the decoders, where random JSON rarely gets."""
    frame = json.loads(
        wire.encode(data.draw(messages(cls)), dialect=data.draw(st.sampled_from(["json", "json-proto"])))
    )
    path = data.draw(st.sampled_from(_paths(frame)))
    _decodes_or_raises_decode_error(json.dumps(_replace(frame, path, data.draw(json_values))), stream)


@pytest.mark.parametrize(
    ("stream", "cls"),
    [(s, c) for s, classes in REQUESTS.items() for c in classes],
    ids=lambda x: getattr(x, "__name__", x),
)
@given(data=st.data())
def test_requests_with_one_value_replaced(stream: str, cls: type, data: st.DataObject) -> None:
    frame = json.loads(wire.encode(data.draw(messages(cls))))
    path = data.draw(st.sampled_from(_paths(frame)))
    _decodes_or_raises_decode_error(
        json.dumps(_replace(frame, path, data.draw(json_values))), stream, request=True
    )
