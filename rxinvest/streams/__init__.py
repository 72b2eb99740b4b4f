"""The Rx face: the client, its sources and the delivery of events to subscribers."""

from rxinvest.streams.client import Client, DeliveryScheduler, MarketData, Operations, Orders
from rxinvest.streams.delivery import Mailbox, Policy
from rxinvest.streams.events import ConnectionStatus, SubscriptionStatus

__all__ = [
    "Client",
    "ConnectionStatus",
    "DeliveryScheduler",
    "Mailbox",
    "MarketData",
    "Operations",
    "Orders",
    "Policy",
    "SubscriptionStatus",
]
