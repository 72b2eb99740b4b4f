"""Position reconciliation, derived: what the fills say an account holds against what the positions
stream says it holds, per (account, instrument) and per (account, currency).

:class:`PositionCheck` is one change of one position's reconciliation state (edge-triggered), built
by :class:`rxinvest.fold.ledger.PositionLedger`, whose module docstring holds the rules. Quantities
are ``Decimal`` units (pieces) for securities and amounts for money; times are aware UTC.
"""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime
from decimal import Decimal

import attrs

__all__ = ["CheckCause", "CheckStatus", "PositionCheck"]


class CheckStatus(enum.Enum):
    MATCHED = "matched"  # the fills and the positions stream agree (money: within the tolerance)
    PENDING = "pending"  # they disagree, for less than the timeout: a change on one side awaits the other
    UNEXPLAINED = "unexplained"  # a reported change no fill explained within the timeout (verdict)
    MISSING = "missing"  # a fill the positions stream did not reflect within the timeout (verdict)


class CheckCause(enum.Enum):
    FILL = "fill"  # an order state carried a new fill: ``expected`` moved
    POSITION = "position"  # a PositionsStream ``position`` (PositionData) moved ``reported``
    SNAPSHOT = "snapshot"  # a snapshot (``initial_positions``, or a portfolio) re-based the position
    TIMEOUT = "timeout"  # a pending change reached the timeout: the verdict (UNEXPLAINED or MISSING)
    REBASE = "rebase"  # the ledger took the reported position as the truth for a change it judged or
    # could not judge (right after a verdict, or an uncertain fill written off silently)


@attrs.frozen(kw_only=True)
class PositionCheck:
    """The reconciliation state of one position changed (or a verdict on it).

    * ``instrument_uid``: the security's uid, or ``""`` for money; ``currency``: the money's currency
      ("rub", lower-case like :class:`~rxinvest.model.Money`), or ``""`` for a security.
    * ``time``: the scheduler's ``now`` passed in with the input, or for a verdict the instant it
      fell due (the pending change's arrival + the timeout).
    * ``expected``: the position the fills say (the last base plus the fills since); ``reported``:
      balance + blocked as the positions stream last said (None: nothing reported yet).
    * ``difference``: ``reported - expected`` (``reported`` None counts as 0); for a verdict, the
      amount judged alone: ``+change`` for UNEXPLAINED, ``-fill`` for MISSING.
    * ``seq``: this event's number among the position's events (0 first); ``id``: a digest of every
      field (numbers by value: ``1.50`` as ``1.5``), so the same inputs give the same ids and a replay
      identical events.
    """

    account_id: str
    instrument_uid: str
    currency: str = ""
    time: datetime
    expected: Decimal
    reported: Decimal | None
    difference: Decimal
    status: CheckStatus
    cause: CheckCause
    seq: int = 0

    @property
    def is_money(self) -> bool:
        return not self.instrument_uid

    @property
    def id(self) -> str:
        """A deterministic id: 32 hex digits of a BLAKE2b digest of the fields (computed when read)."""
        text = "|".join(
            (
                self.account_id,
                self.instrument_uid,
                self.currency,
                str(self.seq),
                self.time.isoformat(),
                self.status.value,
                self.cause.value,
                _canonical(self.expected),
                "" if self.reported is None else _canonical(self.reported),
                _canonical(self.difference),
            )
        )
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _canonical(value: Decimal) -> str:
    """One text per number: ``Decimal("1.50")`` and ``Decimal("1.5")`` are equal, so their ids are."""
    return format(value.normalize(), "f") if value else "0"
