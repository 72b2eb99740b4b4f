"""rxinvest: the T-Invest API's live streams as RxPY Observables of typed events.

>>> import rxinvest
>>> with rxinvest.connect() as client:          # doctest: +SKIP
...     client.market_data.last_prices(["SBER_TQBR", "GAZP_TQBR"]).subscribe(print)
"""

from rxinvest.client import connect
from rxinvest.streams import Client

__all__ = ["Client", "__version__", "connect"]
__version__ = "0.1.0"
