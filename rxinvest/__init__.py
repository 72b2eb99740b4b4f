"""rxinvest: the T-Invest API's live streams as RxPY Observables of typed events.

>>> import rxinvest
>>> with rxinvest.connect() as client:          # doctest: +SKIP
...     client.market_data.last_prices(["SBER_TQBR", "GAZP_TQBR"]).subscribe(print)

``connect`` and ``Client`` load on first use, so that ``import rxinvest.model`` (or ``.wire``, or
``.fold``) loads only what it needs: no reactivex, no sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rxinvest.protocol.pacing import Limits

if TYPE_CHECKING:
    from rxinvest.client import connect
    from rxinvest.streams import Client

__all__ = ["Client", "Limits", "__version__", "connect"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "connect":
        from rxinvest.client import connect

        return connect
    if name == "Client":
        from rxinvest.streams import Client

        return Client
    raise AttributeError(f"module 'rxinvest' has no attribute {name!r}")
