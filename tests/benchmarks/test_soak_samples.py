"""The soak's samples stay compact (they add to the RSS they measure), and its warm-up still sees
when the codec's caches and the recovery memories are full."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from rxinvest.wire import codec


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"
    spec = importlib.util.spec_from_file_location("_soak_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _sample(
    soak: Any, at: float, recovery: dict[str, int], bound: int = 300, caches: tuple[int, ...] = ()
) -> Any:
    return soak.Sample(
        at,
        50.0,
        20,
        0,
        caches,
        recovery=dict(recovery),
        recovery_bound=bound,
        recovery_total=sum(recovery.values()),
        recovery_full=frozenset(k for k, n in recovery.items() if n >= bound),
    )


def test_only_the_newest_sample_keeps_the_entries_by_memory(soak: Any) -> None:
    runner = SimpleNamespace(samples=[])
    keep = soak.Soak.keep
    first = keep(runner, _sample(soak, 0, {"a": 300, "b": 10}))
    second = keep(runner, _sample(soak, 2, {"a": 300, "b": 20}))
    third = keep(runner, _sample(soak, 4, {"a": 300, "b": 300}))
    assert first.recovery == {} and second.recovery == {} and third.recovery == {"a": 300, "b": 300}
    assert second.recovery_full is first.recovery_full  # unchanged: shared
    assert (first.recovery_total, third.recovery_total) == (310, 600)
    assert not hasattr(first, "__dict__")  # slots


def test_recovery_full_at_reads_the_kept_samples(soak: Any) -> None:
    runner = SimpleNamespace(samples=[])
    for at, n in ((0, 100), (2, 250), (4, 300), (6, 299)):
        soak.Soak.keep(runner, _sample(soak, at, {"big": n, "small": 5}))
    assert soak.recovery_full_at(runner.samples) == 4


def test_a_cache_is_full_at_its_bound_or_when_it_forgot_entries(
    soak: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "CACHE_LIMIT", 100)
    samples = [
        _sample(soak, 0, {}, caches=(10, 10)),
        _sample(soak, 2, {}, caches=(100, 60)),  # the first at its bound
        _sample(soak, 4, {}, caches=(95, 99)),
        _sample(soak, 6, {}, caches=(99, 90)),  # the second forgot entries
    ]
    assert soak.caches_full_at(samples) == 6
