"""What the gateway answers a consumer's request with, as the API would answer it: pure functions.

Rules:

* A subscription request's topics are read back from it as the client's session wrote them
  (:func:`topics_of`), one per instrument, in request order; its answer has one entry per
  instrument in that order (the session matches them by position).
* An entry's status comes from the gateway's own client: SUCCESS when it confirmed the topic,
  the API's refusal status when it refused, INTERNAL_ERROR when no answer came in time. An
  UNSUBSCRIBE is always SUCCESS (the gateway's demand count changed; whether its client lets go
  upstream is its own business).
* ``getMySubscriptions`` lists the consumer connection's own confirmed topics, one response per
  kind; a ``PingRequest`` gets the ``Ping`` that echoes its time; ping settings get nothing (the
  consumer's liveness is its lease, not pings).
* An account stream's request gets its stream's answer: OrderStateStream and TradesStream one
  ``SubscriptionResponse`` (ERROR naming the refused accounts if any was refused), PortfolioStream
  and PositionsStream one status per account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rxinvest import model as m
from rxinvest.errors import ApiError, SubscriptionRejectedError
from rxinvest.model.kinds import Kind
from rxinvest.model.operations import PER_ACCOUNT_ANSWERS
from rxinvest.protocol import Topic
from rxinvest.streams.events import SubscriptionStatus
from rxinvest.wire import Stream

__all__ = ["account_answer", "other", "subscription_response", "topics_of"]

_S = m.SubscriptionStatus


def topics_of(kind: Kind, request: Any) -> list[Topic]:
    """The topics of one ``Subscribe*Request``, in request order."""
    spec = kind.spec
    common = {name: getattr(request, name) for name in spec.request_params}
    return [
        Topic(
            kind,
            item.instrument_id or item.figi,
            **{name: getattr(item, name) for name in spec.instrument_params},
            **common,
        )
        for item in request.instruments
    ]


def _status(status: SubscriptionStatus | None) -> m.SubscriptionStatus:
    if status is None:
        return _S.SUBSCRIPTION_STATUS_INTERNAL_ERROR
    if status.confirmed:
        return _S.SUBSCRIPTION_STATUS_SUCCESS
    error = status.error
    if isinstance(error, SubscriptionRejectedError) and isinstance(error.status, m.SubscriptionStatus):
        return error.status
    return _S.SUBSCRIPTION_STATUS_INTERNAL_ERROR


def subscription_response(
    kind: Kind,
    request: Any,
    topics: Sequence[Topic],
    statuses: Mapping[Topic, SubscriptionStatus | None],
    subscribe: bool,
    tracking_id: str = "",
) -> Any:
    """The ``Subscribe*Response`` to ``request`` (whose topics are ``topics``)."""
    spec = kind.spec
    shape = spec.shape
    entries = []
    for topic in topics:
        status = statuses.get(topic)
        code = _status(status) if subscribe else _S.SUBSCRIPTION_STATUS_SUCCESS
        entries.append(
            shape.entry(
                **{name: getattr(topic, name) for name in shape.entry_params},
                figi="",
                instrument_uid=status.instrument_uid if status is not None else "",
                subscription_status=code,
                subscription_id=((status.tracking_id if status else "") or "bus")
                if code is _S.SUBSCRIPTION_STATUS_SUCCESS
                else "",
                subscription_action=request.subscription_action,
            )
        )
    params = {name: getattr(request, name) for name in shape.response_params}
    return spec.response(tracking_id=tracking_id, **{spec.entries: tuple(entries)}, **params)


def other(
    request: Any, held: Iterable[Topic], statuses: Mapping[Topic, SubscriptionStatus | None]
) -> list[Any]:
    """The answer to a MarketDataStream request that is not a subscription (see the rules)."""
    if isinstance(request, m.PingRequest):
        return [m.Ping(time=datetime.now(UTC), ping_request_time=request.time)]
    if isinstance(request, m.GetMySubscriptions):
        by_kind: dict[Kind, list[Topic]] = {}
        for topic in held:
            status = statuses.get(topic)
            if status is not None and status.confirmed:
                by_kind.setdefault(topic.kind, []).append(topic)
        listed = []
        for kind, topics in by_kind.items():
            probe = kind.spec.request(
                subscription_action=m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE,
                **{name: getattr(topics[0], name) for name in kind.spec.request_params},
            )
            listed.append(subscription_response(kind, probe, topics, statuses, True))
        return listed
    return []  # ping settings, and anything else the API would not answer either


def account_answer(
    stream: Stream, accounts: Sequence[str], statuses: Mapping[str, SubscriptionStatus | None]
) -> Any:
    """An account stream's answer to its request for ``accounts``."""
    granted = tuple(a for a in accounts if (s := statuses.get(a)) is not None and s.confirmed)
    refused = [a for a in accounts if a not in granted]
    if stream in (Stream.ORDER_STATE, Stream.TRADES):
        error = None
        if refused or not accounts:
            first = statuses.get(refused[0]) if refused else None
            code = first.error.code if first is not None and isinstance(first.error, ApiError) else "50004"
            error = m.ErrorDetail(code=code or "50004", message=f"refused: {', '.join(refused)}")
        result = m.ResultSubscriptionStatus
        return m.SubscriptionResponse(
            status=result.RESULT_SUBSCRIPTION_STATUS_ERROR if error else result.RESULT_SUBSCRIPTION_STATUS_OK,
            accounts=granted,
            error=error,
        )
    answer = PER_ACCOUNT_ANSWERS[stream]
    return answer.result(
        accounts=tuple(
            answer.entry(account_id=a, subscription_status=answer.granted if a in granted else answer.refused)
            for a in accounts
        )
    )
