"""MarketDataStream subscriptions as the proxy keeps them for one stream: sans-I/O.

:class:`SubscriptionBook` answers each ``Subscribe*Request`` with its ``Subscribe*Response``: one
entry per requested instrument, in request order, with a ``SubscriptionStatus`` each. The rules
(spec §1.6-§1.8, and the simulator's choices where the docs are silent):

* an instrument id is a FIGI, an instrument uid or ``TICKER_CLASSCODE`` (the deprecated ``figi``
  field is read when ``instrument_id`` is empty); unknown: INSTRUMENT_NOT_FOUND;
* the simulated market is an exchange only: a dealer book or dealer trades get SOURCE_IS_INVALID;
* with ``internal_errors`` (a fault), entries fail at random with INTERNAL_ERROR;
* candles need an interval (INTERVAL_IS_INVALID), books a depth of 1, 10, 20, 30, 40 or 50
  (DEPTH_IS_INVALID); an UNSPECIFIED action gets SUBSCRIPTION_ACTION_IS_INVALID;
* an UNSPECIFIED order-book type means ALL, an UNSPECIFIED trade source means ALL (the API's
  defaults): the subscription and its answer carry ALL;
* at most ``max_subscriptions`` (300) candle, book and trade subscriptions together; more get
  LIMIT_IS_EXCEEDED. Trading-status and last-price subscriptions are not counted;
* more than ``max_requests_per_minute`` (100) subscription requests in a sliding minute: every entry
  gets TOO_MANY_REQUESTS;
* a subscription is identified by its instrument and its kind's ``identity`` parameters (interval
  for candles, depth and book type for books, nothing more for the other kinds); subscribing again
  is idempotent (SUCCESS, same subscription id; request-level parameters such as ``waiting_close``
  take the new value); unsubscribing what is not subscribed gets SUBSCRIPTION_NOT_FOUND.

Nothing here branches on a kind: what differs between kinds is read from
:data:`rxinvest.model.kinds.SPECS` (parameters, identity, counting, response classes).
"""

from __future__ import annotations

import enum
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

import attrs

from rxinvest import model as m
from rxinvest.model.kinds import BOOK_DEPTHS, REQUEST_KINDS, Kind, KindSpec
from rxinvest.sim.instruments import Instrument, InstrumentIndex

__all__ = ["Subscription", "SubscriptionBook"]

_Status = m.SubscriptionStatus
_Action = m.SubscriptionAction

# The API's defaults: a parameter left UNSPECIFIED means the value on the right.
_API_DEFAULTS: dict[str, tuple[enum.Enum, enum.Enum]] = {
    "order_book_type": (m.OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED, m.OrderBookType.ORDERBOOK_TYPE_ALL),
    "trade_source": (m.TradeSourceType.TRADE_SOURCE_UNSPECIFIED, m.TradeSourceType.TRADE_SOURCE_ALL),
}
# Parameter checks, in the order they are made: parameter -> (is the value served?, status if not).
# Only the parameters of the request's kind are checked; the sources come first, so a dealer book of
# a bad depth is SOURCE_IS_INVALID.
_CHECKS: dict[str, tuple[Callable[[Any], bool], m.SubscriptionStatus]] = {
    "order_book_type": (
        lambda value: value is not m.OrderBookType.ORDERBOOK_TYPE_DEALER,
        _Status.SUBSCRIPTION_STATUS_SOURCE_IS_INVALID,
    ),
    "trade_source": (
        lambda value: value is not m.TradeSourceType.TRADE_SOURCE_DEALER,
        _Status.SUBSCRIPTION_STATUS_SOURCE_IS_INVALID,
    ),
    "interval": (
        lambda value: value is not m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED,
        _Status.SUBSCRIPTION_STATUS_INTERVAL_IS_INVALID,
    ),
    "depth": (lambda value: value in BOOK_DEPTHS, _Status.SUBSCRIPTION_STATUS_DEPTH_IS_INVALID),
}
# An entry that made no subscription (unknown instrument, refused request ...) shows its kind's
# parameters at their defaults, except these request-level ones, which it echoes from the request
# (what the simulator has always answered; the docs do not say).
_ECHOED = frozenset({"waiting_close"})


@attrs.define
class Subscription:
    """One active subscription: its kind, key, instrument and the parameters it was made with.

    ``key`` is the instrument uid followed by the values of the kind's ``identity`` parameters.
    Parameters that do not belong to the kind keep their defaults.
    """

    kind: Kind
    key: tuple[Any, ...]
    instrument: Instrument
    subscription_id: str
    interval: m.SubscriptionInterval = m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED
    waiting_close: bool = False
    candle_source_type: m.CandleSourceFilter | None = None
    depth: int = 0
    order_book_type: m.OrderBookType = m.OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED
    trade_source: m.TradeSourceType = m.TradeSourceType.TRADE_SOURCE_UNSPECIFIED
    with_open_interest: bool = False


# How one instrument of a request was decided: (instrument, subscription, status, action).
_Entry: TypeAlias = tuple[Instrument | None, Subscription | None, m.SubscriptionStatus, m.SubscriptionAction]


class SubscriptionBook:
    """The subscriptions of one MarketDataStream connection.

    ``now`` arguments are monotonic seconds (only differences matter). Not thread-safe.
    ``refuse_all`` and ``internal_errors`` are the connection's faults; its owner may change them.
    """

    def __init__(
        self,
        instruments: InstrumentIndex,
        *,
        stream_id: str,
        max_subscriptions: int = 300,
        max_requests_per_minute: int = 100,
        refuse_all: bool = False,
        internal_errors: float = 0.0,
        rng: random.Random | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.instruments = instruments
        self.stream_id = stream_id
        self.max_subscriptions = max_subscriptions
        self.max_requests_per_minute = max_requests_per_minute
        self.refuse_all = refuse_all
        self.internal_errors = internal_errors
        self._rng = rng or random.Random(0)
        self._new_id = new_id
        self._active: dict[Kind, dict[tuple[Any, ...], Subscription]] = {kind: {} for kind in Kind}
        self._requests: deque[float] = deque()

    # --- queries -------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Subscription]:
        for subscriptions in self._active.values():
            yield from subscriptions.values()

    def __len__(self) -> int:
        return sum(map(len, self._active.values()))

    def of(self, kind: Kind) -> dict[tuple[Any, ...], Subscription]:
        """The active subscriptions of ``kind`` by key (the live dict: do not change it)."""
        return self._active[kind]

    @property
    def counted(self) -> int:
        """Subscriptions that count against ``max_subscriptions``."""
        return sum(len(active) for kind, active in self._active.items() if kind.spec.counted)

    # --- requests ------------------------------------------------------------------------------------

    def handle(self, request: Any, *, now: float, tracking_id: str) -> tuple[object, list[Subscription]]:
        """Apply one subscription request; returns its response and the subscriptions it created."""
        spec = REQUEST_KINDS[type(request)].spec
        refused = self._rate_limited(now) or self.refuse_all
        created: list[Subscription] = []
        entries = [self._entry(spec, request, item, refused, created) for item in request.instruments]
        return self._response(spec, request, entries, tracking_id), created

    def my_subscriptions(self, tracking_id: str) -> list[object]:
        """The getMySubscriptions answer: one response per kind that has active subscriptions."""
        action = _Action.SUBSCRIPTION_ACTION_SUBSCRIBE
        return [
            self._response(
                kind.spec,
                None,
                [
                    (sub.instrument, sub, _Status.SUBSCRIPTION_STATUS_SUCCESS, action)
                    for sub in active.values()
                ],
                tracking_id,
            )
            for kind, active in self._active.items()
            if active
        ]

    def _rate_limited(self, now: float) -> bool:
        window = self._requests
        while window and now - window[0] >= 60.0:
            window.popleft()
        window.append(now)
        return len(window) > self.max_requests_per_minute

    def _entry(
        self, spec: KindSpec, request: Any, item: Any, refused: bool, created: list[Subscription]
    ) -> _Entry:
        """Decide one instrument of a request."""
        action = request.subscription_action
        instrument = self.instruments.get(item.instrument_id or item.figi)
        if refused:
            return instrument, None, _Status.SUBSCRIPTION_STATUS_TOO_MANY_REQUESTS, action
        if action is _Action.SUBSCRIPTION_ACTION_UNSPECIFIED:
            return instrument, None, _Status.SUBSCRIPTION_STATUS_SUBSCRIPTION_ACTION_IS_INVALID, action
        if instrument is None:
            return None, None, _Status.SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND, action
        if self.internal_errors and self._rng.random() < self.internal_errors:
            return instrument, None, _Status.SUBSCRIPTION_STATUS_INTERNAL_ERROR, action
        probe = _describe(spec, request, item, instrument)
        parameters = spec.parameters
        for name, (served, status) in _CHECKS.items():
            if name in parameters and not served(getattr(probe, name)):
                return instrument, probe, status, action
        active = self._active[spec.kind]
        existing = active.get(probe.key)
        if action is _Action.SUBSCRIPTION_ACTION_UNSUBSCRIBE:
            if existing is None:
                return instrument, probe, _Status.SUBSCRIPTION_STATUS_SUBSCRIPTION_NOT_FOUND, action
            del active[probe.key]
            return instrument, existing, _Status.SUBSCRIPTION_STATUS_SUCCESS, action
        if existing is not None:  # idempotent: same id, request-level parameters updated
            for name in spec.request_params:
                setattr(existing, name, getattr(probe, name))
            return instrument, existing, _Status.SUBSCRIPTION_STATUS_SUCCESS, action
        if spec.counted and self.counted >= self.max_subscriptions:
            return instrument, probe, _Status.SUBSCRIPTION_STATUS_LIMIT_IS_EXCEEDED, action
        probe.subscription_id = self._new_id()
        active[probe.key] = probe
        created.append(probe)
        return instrument, probe, _Status.SUBSCRIPTION_STATUS_SUCCESS, action

    # --- responses -----------------------------------------------------------------------------------

    def _response(self, spec: KindSpec, request: Any, entries: list[_Entry], tracking_id: str) -> object:
        """The ``Subscribe*Response`` of ``spec``'s kind: one entry per instrument, in request order.

        ``request`` is None for the getMySubscriptions answer: request-level fields of the response
        then show their defaults.
        """
        entry_class, entry_params, response_params = attrs.astuple(spec.shape, recurse=False)
        items = []
        for instrument, sub, status, action in entries:
            if sub is not None:
                params = {name: getattr(sub, name) for name in entry_params}
            else:
                params = {
                    name: getattr(request, name) for name in entry_params if name in _ECHOED and request
                }
            items.append(entry_class(**params, **self._common(instrument, sub, status, action)))
        fields = attrs.fields_dict(spec.response)
        answer = {
            name: getattr(request, name) if request else fields[name].default for name in response_params
        }
        return spec.response(
            tracking_id=tracking_id, **{spec.entries: tuple(items)}, **_with_api_defaults(answer)
        )

    def _common(
        self,
        instrument: Instrument | None,
        sub: Subscription | None,
        status: m.SubscriptionStatus,
        action: m.SubscriptionAction,
    ) -> dict[str, Any]:
        """The fields every kind's response entry has."""
        return {
            "figi": instrument.figi if instrument else "",
            "subscription_status": status,
            "instrument_uid": instrument.uid if instrument else "",
            "stream_id": self.stream_id,
            "subscription_id": sub.subscription_id
            if sub and status is _Status.SUBSCRIPTION_STATUS_SUCCESS
            else "",
            "subscription_action": action,
            "ticker": instrument.ticker if instrument else "",
            "class_code": instrument.class_code if instrument else "",
        }


def _with_api_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every UNSPECIFIED value the API gives a meaning to replaced by that meaning."""
    for name, (unspecified, meant) in _API_DEFAULTS.items():
        if params.get(name, meant) is unspecified:
            params[name] = meant
    return params


def _describe(spec: KindSpec, request: Any, item: Any, instrument: Instrument) -> Subscription:
    """The subscription one instrument of ``request`` asks for (without an id yet)."""
    params = {name: getattr(item, name) for name in spec.instrument_params}
    params.update((name, getattr(request, name)) for name in spec.request_params)
    params = _with_api_defaults(params)
    key = (instrument.uid, *(params[name] for name in spec.identity))
    return Subscription(spec.kind, key, instrument, "", **params)
