"""The simulator's instruments: a fixed catalogue with realistic identities.

Identifiers follow the real ones in form (FIGI, instrument uid, ticker, class code); where the
real uid is not known to us it is a stable UUID derived from the ticker. Prices are per unit: shares
and funds in roubles, the bond in percent of nominal, the future in points.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from decimal import Decimal

import attrs

from rxinvest.errors import ConfigurationError

__all__ = ["CATALOGUE", "Instrument", "InstrumentIndex"]


@attrs.frozen
class Instrument:
    """One tradable instrument of the simulated market.

    ``kind`` is the API's instrument type string ("share", "bond", "etf", "futures"); ``lot`` is
    units per lot; ``min_price_increment`` the tick; ``price`` the opening price (on the tick grid).
    Prices that are not ``Decimal``, or off the grid, are a :class:`~rxinvest.errors.ConfigurationError`.
    """

    figi: str
    uid: str
    ticker: str
    class_code: str
    lot: int
    min_price_increment: Decimal
    kind: str
    price: Decimal
    name: str
    currency: str = "rub"
    position_uid: str = attrs.field(default="")

    def __attrs_post_init__(self) -> None:
        if not self.position_uid:
            object.__setattr__(
                self, "position_uid", str(uuid.uuid5(uuid.NAMESPACE_URL, f"position/{self.uid}"))
            )
        if not isinstance(self.price, Decimal) or not isinstance(self.min_price_increment, Decimal):
            raise ConfigurationError(f"{self.ticker}: price and min_price_increment must be Decimal")
        if self.price % self.min_price_increment:
            raise ConfigurationError(
                f"{self.ticker}: price {self.price} is off the tick grid {self.min_price_increment}"
            )

    @property
    def instrument_id(self) -> str:
        """The ``TICKER_CLASSCODE`` form of the id, accepted wherever the API takes an instrument id."""
        return f"{self.ticker}_{self.class_code}"


def _uid(ticker: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rxinvest-sim/{ticker}"))


def _i(
    figi: str,
    uid: str | None,
    ticker: str,
    class_code: str,
    lot: int,
    tick: str,
    kind: str,
    price: str,
    name: str,
) -> Instrument:
    return Instrument(
        figi, uid or _uid(ticker), ticker, class_code, lot, Decimal(tick), kind, Decimal(price), name
    )


CATALOGUE: tuple[Instrument, ...] = (
    _i(
        "BBG004730N88",
        "e6123145-9665-43e0-8413-cd61b8aa9b13",
        "SBER",
        "TQBR",
        10,
        "0.01",
        "share",
        "285.40",
        "Sberbank",
    ),
    _i(
        "BBG004730RP0",
        "962e2a95-02a9-4171-abd7-aa198dbe643a",
        "GAZP",
        "TQBR",
        10,
        "0.01",
        "share",
        "178.97",
        "Gazprom",
    ),
    _i(
        "BBG004731032",
        "02cfdf61-6298-4c0f-a9ca-9cabc82afaf3",
        "LKOH",
        "TQBR",
        1,
        "0.5",
        "share",
        "6950.5",
        "Lukoil",
    ),
    _i(
        "BBG004730ZJ9",
        "8e2b0325-0292-4654-8a18-4f63ed3b0e09",
        "VTBR",
        "TQBR",
        1,
        "0.005",
        "share",
        "98.765",
        "VTB Bank",
    ),
    _i(
        "BBG004731354",
        "fd417230-19cf-4e7b-9623-f7c9ca18ec6b",
        "ROSN",
        "TQBR",
        1,
        "0.05",
        "share",
        "512.35",
        "Rosneft",
    ),
    _i(
        "BBG004731489",
        "509edd0c-129c-4ee2-934d-7f6246126da1",
        "GMKN",
        "TQBR",
        10,
        "0.02",
        "share",
        "123.46",
        "Nornickel",
    ),
    _i(
        "BBG004RVFCY3",
        "ca845f68-6c43-44bc-b584-330d2a1e5eb7",
        "MGNT",
        "TQBR",
        1,
        "0.5",
        "share",
        "4870.0",
        "Magnit",
    ),
    _i(
        "BBG00475KKY8",
        "0da66728-6c30-44c4-9264-df8fac2467ee",
        "NVTK",
        "TQBR",
        1,
        "0.2",
        "share",
        "1020.4",
        "Novatek",
    ),
    _i("BBG004730JJ5", None, "MOEX", "TQBR", 10, "0.01", "share", "201.15", "Moscow Exchange"),
    _i(
        "BBG0047315Y7",
        "127361c2-32ec-448c-b3ec-602166f537ea",
        "POLY",
        "TQBR",
        1,
        "0.1",
        "share",
        "195.2",
        "Polymetal",
    ),
    _i("TCS00A107T19", None, "YDEX", "TQBR", 1, "0.5", "share", "4125.5", "Yandex"),
    _i("BBG00YV1RDP4", None, "SU26238RMFS4", "TQOB", 1, "0.001", "bond", "61.245", "OFZ 26238"),
    _i("TCS60A101X76", None, "TMOS", "TQTF", 1, "0.01", "etf", "6.94", "T-Capital MOEX index fund"),
    _i("FUTSI1225000", None, "SiZ5", "SPBFUT", 1, "1", "futures", "81250", "USD/RUB future Dec 2025"),
)


class InstrumentIndex:
    """Resolves any id the API accepts (FIGI, instrument uid, ``TICKER_CLASSCODE``) to an instrument.

    Anything but :class:`Instrument` values is a :class:`~rxinvest.errors.ConfigurationError`;
    looking up an unknown id is ``None`` from :meth:`get`, ``KeyError`` from ``[]``.
    """

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self.instruments = tuple(instruments)
        self._by_id: dict[str, Instrument] = {}
        for instrument in self.instruments:
            if not isinstance(instrument, Instrument):
                raise ConfigurationError(f"instruments must be Instrument values, not {instrument!r}")
            for key in (instrument.figi, instrument.uid, instrument.instrument_id):
                self._by_id[key] = instrument

    def get(self, instrument_id: str) -> Instrument | None:
        return self._by_id.get(instrument_id)

    def __getitem__(self, instrument_id: str) -> Instrument:
        instrument = self._by_id.get(instrument_id)
        if instrument is None:
            raise KeyError(instrument_id)
        return instrument

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self.instruments)

    def __len__(self) -> int:
        return len(self.instruments)
