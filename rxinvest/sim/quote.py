"""What the simulated market tells the simulated broker about one instrument at one moment."""

from __future__ import annotations

from decimal import Decimal

import attrs

__all__ = ["Quote"]


@attrs.frozen
class Quote:
    """Top of book and last trade of one instrument; sizes in lots, prices per unit.

    ``best_bid``/``best_ask`` are ``None`` while that side is empty or trading is halted
    (``tradable`` False): a broker fills nothing then.
    """

    instrument_uid: str
    best_bid: Decimal | None
    best_ask: Decimal | None
    bid_size: int
    ask_size: int
    last_price: Decimal
    tradable: bool = True
