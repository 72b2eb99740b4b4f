"""The Rx face: the client, its sources and the delivery of events to subscribers."""

from rxinvest.streams.client import (
    DEFAULT_BACKLOG,
    DEFAULT_PING_DELAY,
    Client,
    MarketData,
    Operations,
    Orders,
    Source,
)
from rxinvest.streams.delivery import DeliveryScheduler, DeliveryStats, Mailbox, Policy
from rxinvest.streams.events import (
    ConnectionState,
    ConnectionStatus,
    Metrics,
    SubscriptionCheck,
    SubscriptionStatus,
)

__all__ = [
    "DEFAULT_BACKLOG",
    "DEFAULT_PING_DELAY",
    "Client",
    "ConnectionState",
    "ConnectionStatus",
    "DeliveryScheduler",
    "DeliveryStats",
    "Mailbox",
    "MarketData",
    "Metrics",
    "Operations",
    "Orders",
    "Policy",
    "Source",
    "SubscriptionCheck",
    "SubscriptionStatus",
]
