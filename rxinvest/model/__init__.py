"""Typed, immutable values of the T-Invest stream contracts and of the unary methods rxinvest calls.

Every class is a frozen, slotted attrs class that compares and hashes by value. Attribute names are
the proto field names; ``Quotation`` fields are exact ``Decimal``, ``MoneyValue`` fields are
:class:`Money`, int64 are ``int``, timestamps are aware UTC ``datetime`` (microsecond precision),
repeated fields are tuples, and absent message fields and proto3 ``optional`` scalars are ``None``.
No class here knows JSON: see :mod:`rxinvest.wire`. :mod:`rxinvest.model.kinds` is the vocabulary
of market-data subscription kinds, one table row per kind.
"""

from rxinvest.model.common import *  # noqa: F403
from rxinvest.model.common import __all__ as _common
from rxinvest.model.enums import *  # noqa: F403
from rxinvest.model.enums import __all__ as _enums
from rxinvest.model.kinds import BOOK_DEPTHS, CANDLE_INTERVALS, Kind, KindSpec
from rxinvest.model.market_data import *  # noqa: F403
from rxinvest.model.market_data import __all__ as _market_data
from rxinvest.model.operations import *  # noqa: F403
from rxinvest.model.operations import __all__ as _operations
from rxinvest.model.orders import *  # noqa: F403
from rxinvest.model.orders import __all__ as _orders
from rxinvest.model.unary import *  # noqa: F403
from rxinvest.model.unary import __all__ as _unary

__all__ = [
    *_common,
    *_enums,
    *_market_data,
    *_orders,
    *_operations,
    *_unary,
    "BOOK_DEPTHS",
    "CANDLE_INTERVALS",
    "Kind",
    "KindSpec",
]  # pyright: ignore
