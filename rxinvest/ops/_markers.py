"""``require_markers``: the guard of every operator that must see losses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import SingleAssignmentDisposable

from rxinvest.derived import Subscribed
from rxinvest.errors import ConfigurationError

_T = TypeVar("_T")


def require_markers_(who: str) -> Callable[[Observable[_T]], Observable[_T]]:
    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            upstream = SingleAssignmentDisposable()
            state = {"first": True, "failed": False}  # per subscription

            def on_next(item: Any) -> None:
                if state["failed"]:
                    return
                if state["first"]:
                    state["first"] = False
                    if not isinstance(item, Subscribed):
                        state["failed"] = True
                        observer.on_error(
                            ConfigurationError(
                                f"{who} must see gaps: give it source.with_markers() "
                                f"(its first item was a {type(item).__name__}, not Subscribed)"
                            )
                        )
                        upstream.dispose()  # also if the source emitted while being subscribed
                        return
                observer.on_next(item)

            upstream.disposable = source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )
            return upstream

        return reactivex.create(subscribe)

    return operator
