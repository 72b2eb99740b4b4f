"""The codec's value caches forget their oldest entries when full, not everything at once."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from rxinvest import model as m
from rxinvest import wire
from rxinvest.wire import codec


@pytest.fixture(autouse=True)
def _small_caches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    codec.clear_caches()
    monkeypatch.setattr(codec, "CACHE_LIMIT", 16)
    yield
    codec.clear_caches()


def test_a_full_cache_forgets_its_oldest_eighth_and_keeps_the_rest() -> None:
    cache: dict[str, int] = {}
    for n in range(16):
        codec._store(cache, str(n), n)
    assert list(cache) == [str(n) for n in range(16)]
    codec._store(cache, "16", 16)  # full: the two oldest go, the newest comes in
    assert list(cache) == [str(n) for n in range(2, 17)]


def test_a_cache_under_churn_stays_level_within_an_eighth_of_its_bound() -> None:
    cache: dict[str, int] = {}
    sizes = []
    for n in range(1000):
        codec._store(cache, str(n), n)
        sizes.append(len(cache))
    assert max(sizes) == 16
    assert min(sizes[16:]) == 16 - 16 // 8 + 1  # never emptied once full
    assert "999" in cache and "0" not in cache


def test_a_cache_over_a_lowered_bound_comes_back_under_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cache: dict[str, int] = {}
    for n in range(10):
        codec._store(cache, str(n), n)
    monkeypatch.setattr(codec, "CACHE_LIMIT", 1)
    codec._store(cache, "x", 0)
    assert list(cache) == ["x"]


def test_decoding_under_churn_keeps_recent_values_interned() -> None:
    def level(units: int) -> object:
        frame = {"orderbook": {"bids": [{"price": {"units": str(units), "nano": 0}, "quantity": "1"}]}}
        book = wire.decode(json.dumps(frame), stream="MarketDataStream")
        assert isinstance(book, m.OrderBook)
        return book.bids[0]

    for units in range(100):
        level(units)
    assert 16 - 16 // 8 <= len(codec._level_cache) <= 16
    assert level(99) is level(99)  # the newest stays interned
    assert ("99", 0, "1") in codec._level_cache and ("0", 0, "1") not in codec._level_cache


def test_eviction_keeps_the_table_at_its_size_under_churn() -> None:
    import sys

    cache: dict[str, int] = {}
    for n in range(16):
        codec._store(cache, str(n), n)
    full = sys.getsizeof(cache)
    for n in range(16, 2000):
        codec._store(cache, str(n), n)
        assert sys.getsizeof(cache) <= full  # deleting one by one would leave dead slots, then grow


def test_a_cache_changed_during_eviction_is_emptied_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    class Racing(dict[str, int]):
        def items(self) -> object:  # type: ignore[override]
            def changing() -> object:
                yield from [("a", 1)]
                raise RuntimeError("dictionary changed size during iteration")

            return changing()

    cache = Racing({str(n): n for n in range(16)})
    codec._store(cache, "new", 1)
    assert list(cache) == ["new"]
