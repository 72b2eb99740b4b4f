"""The kinds table against the model it describes: every name it holds is a real field."""

from __future__ import annotations

import attrs
import pytest

from rxinvest import model as m
from rxinvest.errors import ConfigurationError
from rxinvest.model.kinds import EVENT_KINDS, REQUEST_KINDS, RESPONSE_KINDS, SPECS, Kind


def names(cls: type) -> set[str]:
    return {field.name for field in attrs.fields(cls)}


@pytest.mark.parametrize("kind", list(Kind))
def test_each_row_names_real_fields(kind: Kind) -> None:
    spec = kind.spec
    assert spec.kind is kind
    assert {"subscription_action", "instruments"} <= names(spec.request)
    assert set(spec.request_params) <= names(spec.request)
    assert {"instrument_id", *spec.instrument_params} <= names(spec.instrument)
    assert set(spec.identity) <= set(spec.instrument_params)  # what tells two subscriptions apart
    entries = attrs.fields_dict(spec.response)[spec.entries]
    assert entries.default == ()
    for event in spec.events:
        assert "instrument_uid" in names(event)
        if spec.route is not None:
            assert spec.route in names(event)
            assert spec.route in spec.identity


def test_the_lookups_cover_every_kind_once() -> None:
    assert set(SPECS) == set(Kind)
    assert sorted(REQUEST_KINDS.values()) == sorted(Kind)
    assert sorted(RESPONSE_KINDS.values()) == sorted(Kind)
    assert EVENT_KINDS[m.OpenInterest] is Kind.TRADES
    assert set(EVENT_KINDS.values()) == set(Kind)
    # exactly the kinds the API counts against its 300-subscription limit (spec §1.8)
    assert {k for k in Kind if k.spec.counted} == {Kind.CANDLES, Kind.ORDER_BOOKS, Kind.TRADES}


def test_a_kind_by_its_name() -> None:
    assert Kind.parse("order_books") is Kind.ORDER_BOOKS
    assert Kind.ORDER_BOOKS == "order_books"
    with pytest.raises(ConfigurationError, match="unknown subscription kind 'books'"):
        Kind.parse("books")
