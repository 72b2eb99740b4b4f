"""The bus's subject scheme and message format: everything the gateway and its consumers agree on.

Subjects (``prefix`` is ``tinvest`` unless both sides are given another):

* ``<prefix>.md.<kind>.<uid>`` for market data, with the kind's route parameter before the uid
  when it has one (:attr:`~rxinvest.model.kinds.KindSpec.route`):
  ``tinvest.md.trades.<uid>``, ``tinvest.md.order_books.<depth>.<uid>``,
  ``tinvest.md.candles.<SubscriptionInterval name>.<uid>``, ``tinvest.md.info.<uid>``,
  ``tinvest.md.last_prices.<uid>``. ``<kind>`` is :class:`~rxinvest.model.Kind`'s value.
* ``<prefix>.acct.<stream>.<account id>`` for account events: ``<stream>`` is the proxy method
  (``OrderStateStream``, ``TradesStream``, ``PositionsStream``, ``PortfolioStream``).
* ``<prefix>.demand`` (request/reply): consumers' demand, leases and requests (see
  :mod:`rxinvest.bus.gateway`); ``<prefix>.active`` the active gateway's announcements;
  ``<prefix>.status`` the lifecycle of its client's connections upstream (for monitoring).

Messages on ``md`` and ``acct`` subjects are one wire frame each, exactly as the API's stream sends
an event (``{"orderbook": {...}}``, in the gateway's dialect), so consumers decode them with
:func:`rxinvest.wire.decode`. A message with the header ``Rx-Mark`` is no event but a mark: ``gap``
(events of that subject may be missing between the header's ``Rx-Since`` and ``Rx-Until``, ISO
times). Every account message carries ``Nats-Msg-Id``, derived from its subject and the event's
identity, so a gateway that publishes an event again (restarted, or taking over) is de-duplicated
by the server within the stream's duplicate window, and ``Rx-Time``, when it was published.
Market-data messages carry no header.

A token of a subject may not hold ``.``, ``*``, ``>`` or white space: ids that do (none the API
issues) are refused with :class:`~rxinvest.errors.BusError`.
"""

from __future__ import annotations

import enum
import re

import attrs

from rxinvest.errors import BusError
from rxinvest.model.kinds import Kind
from rxinvest.protocol import Topic
from rxinvest.wire import Stream

__all__ = ["MARK", "SINCE", "UNTIL", "Subjects"]

#: Header names of a mark message.
MARK, SINCE, UNTIL = "Rx-Mark", "Rx-Since", "Rx-Until"
_BAD_TOKEN = re.compile(r"[\s.*>]|^$")


def _token(value: object) -> str:
    text = value.name if isinstance(value, enum.Enum) else str(value)
    if _BAD_TOKEN.search(text):
        raise BusError(f"{text!r} cannot be a token of a NATS subject")
    return text


def _prefix(value: str) -> str:
    if not value or any(_BAD_TOKEN.search(part) for part in value.split(".")):
        raise BusError(f"bad subject prefix {value!r}: dot-separated tokens without * > or spaces")
    return value


@attrs.frozen
class Subjects:
    """The subjects of one bus (see the module docstring)."""

    prefix: str = attrs.field(default="tinvest", converter=_prefix)

    @property
    def demand(self) -> str:
        return f"{self.prefix}.demand"

    @property
    def active(self) -> str:
        return f"{self.prefix}.active"

    @property
    def status(self) -> str:
        return f"{self.prefix}.status"

    @property
    def data(self) -> tuple[str, ...]:
        """What the JetStream stream holds: every market-data and account subject."""
        return (f"{self.prefix}.md.>", f"{self.prefix}.acct.>")

    def market(self, kind: Kind, uid: str, route: object = None) -> str:
        """The subject of ``kind``'s events of instrument ``uid`` (``route``: the value of the kind's
        route attribute, or None when it has none)."""
        middle = "" if kind.spec.route is None else f"{_token(route)}."
        return f"{self.prefix}.md.{kind.value}.{middle}{_token(uid)}"

    def of_topic(self, topic: Topic, uid: str) -> str:
        """The subject of ``topic``'s events, its instrument's uid being ``uid``."""
        route = topic.kind.spec.route
        return self.market(topic.kind, uid, None if route is None else getattr(topic, route))

    def of_event(self, kind: Kind, event: object) -> str:
        """The subject of one market event of ``kind``."""
        route = kind.spec.route
        return self.market(kind, event.instrument_uid, None if route is None else getattr(event, route))  # type: ignore[attr-defined]

    def account(self, stream: Stream, account: str) -> str:
        return f"{self.prefix}.acct.{stream.value}.{_token(account)}"
