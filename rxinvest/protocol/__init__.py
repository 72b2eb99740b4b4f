"""Sans-I/O protocol sessions: frames and the current time in; outcomes, frames to send and deadlines out.

* :mod:`~rxinvest.protocol.topic`: a market-data :class:`Topic` and its lifecycle state machine;
* :mod:`~rxinvest.protocol.events`: what a session reports (:data:`Outcome`), errors ready-made;
* :mod:`~rxinvest.protocol.market_data` and :mod:`~rxinvest.protocol.accounts`: the sessions;
* :mod:`~rxinvest.protocol.pacing`: the request budget, the throttle and the sharding plan;
* :mod:`~rxinvest.protocol.closing`: what a close code or handshake status means, and the backoff;
* :mod:`~rxinvest.protocol.liveness`: when a silent stream counts as dead.
"""

from rxinvest.protocol.accounts import ACCOUNT_STREAMS, AccountSession
from rxinvest.protocol.closing import Backoff, classify_close, classify_handshake
from rxinvest.protocol.events import (
    AccountAccepted,
    AccountOutcome,
    AccountRejected,
    Checked,
    Confirmed,
    Delivered,
    Malformed,
    MarketDataOutcome,
    Outcome,
    Rejected,
    Send,
    StreamEvent,
    StreamFailed,
)
from rxinvest.protocol.market_data import MarketDataSession
from rxinvest.protocol.pacing import RequestBudget, ShardPlan
from rxinvest.protocol.topic import Topic, TopicState

__all__ = [
    "ACCOUNT_STREAMS",
    "AccountAccepted",
    "AccountOutcome",
    "AccountRejected",
    "AccountSession",
    "Backoff",
    "Checked",
    "Confirmed",
    "Delivered",
    "Malformed",
    "MarketDataOutcome",
    "MarketDataSession",
    "Outcome",
    "Rejected",
    "RequestBudget",
    "Send",
    "ShardPlan",
    "StreamEvent",
    "StreamFailed",
    "Topic",
    "TopicState",
    "classify_close",
    "classify_handshake",
]
