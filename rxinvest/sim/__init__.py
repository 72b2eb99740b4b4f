"""A protocol-faithful local simulator of the T-Invest WebSocket proxy (the embedded default target).

>>> from rxinvest.sim import serve
>>> with serve(seed=1) as sim:                     # doctest: +SKIP
...     sim.base_url, sim.token, sim.accounts
"""

from rxinvest.sim.faults import Faults
from rxinvest.sim.instruments import CATALOGUE, Instrument
from rxinvest.sim.market import SCENARIOS
from rxinvest.sim.server import ConnectionInfo, Simulator
from rxinvest.sim.serving import serve

__all__ = ["CATALOGUE", "SCENARIOS", "ConnectionInfo", "Faults", "Instrument", "Simulator", "serve"]
