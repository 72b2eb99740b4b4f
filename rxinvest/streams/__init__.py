"""The Rx face: the client, its sources and the delivery of events to subscribers."""

from rxinvest.streams.client import Client, MarketData, Operations, Orders
from rxinvest.streams.delivery import DeliveryScheduler, Mailbox, Policy
from rxinvest.streams.events import ConnectionState, ConnectionStatus, SubscriptionStatus

__all__ = [
    "Client",
    "ConnectionState",
    "ConnectionStatus",
    "DeliveryScheduler",
    "Mailbox",
    "MarketData",
    "Operations",
    "Orders",
    "Policy",
    "SubscriptionStatus",
]
