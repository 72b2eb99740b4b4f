"""Sans-I/O protocol sessions: frames and the current time in; events, frames to send and deadlines out."""

from rxinvest.protocol.accounts import ACCOUNT_STREAMS, AccountAccepted, AccountRejected, AccountSession
from rxinvest.protocol.closing import Backoff, classify_close
from rxinvest.protocol.market_data import (
    Confirmed,
    Delivered,
    Malformed,
    MarketDataSession,
    Rejected,
    Send,
    StreamFailed,
    Topic,
)

__all__ = [
    "ACCOUNT_STREAMS",
    "AccountAccepted",
    "AccountRejected",
    "AccountSession",
    "Backoff",
    "Confirmed",
    "Delivered",
    "Malformed",
    "MarketDataSession",
    "Rejected",
    "Send",
    "StreamFailed",
    "Topic",
    "classify_close",
]
