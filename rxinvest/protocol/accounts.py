"""The account streams' session (OrderStateStream, TradesStream, PositionsStream, PortfolioStream).

Sans-I/O. These streams take one request when the connection opens and then only talk. The answer
tells, account by account, what was granted; refused accounts come back as :class:`AccountRejected`.
Every data event is delivered: order states, fills, positions and portfolios are never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from rxinvest import model as m
from rxinvest.errors import DecodeError
from rxinvest.protocol.liveness import Liveness
from rxinvest.protocol.market_data import Delivered, Malformed, StreamFailed
from rxinvest.wire import Stream, decode, encode

__all__ = ["ACCOUNT_STREAMS", "AccountAccepted", "AccountRejected", "AccountSession"]

ACCOUNT_STREAMS = (Stream.ORDER_STATE, Stream.TRADES, Stream.POSITIONS, Stream.PORTFOLIO)


@attrs.frozen
class AccountAccepted:
    account_id: str
    tracking_id: str


@attrs.frozen
class AccountRejected:
    """The API refused ``account_id``; ``status`` is the stream's status member and ``code`` the API
    error code when it gave one (``"40002"``: no rights, ``"50004"``: no such account)."""

    account_id: str
    status: Any
    code: str
    message: str
    tracking_id: str


class AccountSession(Liveness):
    """One account-stream connection: its request, the per-account answer, its events and liveness."""

    def __init__(
        self,
        stream: Stream,
        accounts: Sequence[str],
        *,
        dialect: str = "json",
        ping_delay: float | None = None,
        with_initial_positions: bool = True,
        watchdog_factor: float = 2.5,
    ) -> None:
        if stream not in ACCOUNT_STREAMS:
            raise ValueError(f"{stream} is not an account stream")
        super().__init__(ping_delay, watchdog_factor)
        self.stream = stream
        self.accounts = tuple(accounts)
        self.dialect = dialect
        self.with_initial_positions = with_initial_positions

    def request(self) -> Any:
        ms = None if self.ping_delay is None else round(self.ping_delay * 1000)
        settings = None if ms is None else m.PingDelaySettings(ping_delay_ms=ms)
        if self.stream is Stream.ORDER_STATE:
            return m.OrderStateStreamRequest(accounts=self.accounts, ping_delay_millis=ms)
        if self.stream is Stream.TRADES:
            return m.TradesStreamRequest(accounts=self.accounts, ping_delay_ms=ms)
        if self.stream is Stream.POSITIONS:
            return m.PositionsStreamRequest(
                accounts=self.accounts,
                with_initial_positions=self.with_initial_positions,
                ping_settings=settings,
            )
        return m.PortfolioStreamRequest(accounts=self.accounts, ping_settings=settings)

    def connected(self, now: datetime) -> list[str]:
        self.alive(now)
        return [encode(self.request(), dialect=self.dialect)]

    def receive(self, frame: str | bytes, now: datetime) -> list[Any]:
        self.alive(now)
        try:
            event = decode(frame, stream=self.stream)
        except DecodeError as exc:
            return [Malformed(exc)]
        if isinstance(event, m.Ping):
            return []
        if isinstance(event, m.RpcStatus):
            return [StreamFailed(event)]
        if isinstance(event, m.SubscriptionResponse):
            return self._order_streams_answer(event)
        if isinstance(event, m.PortfolioSubscriptionResult | m.PositionsSubscriptionResult):
            return self._operations_answer(event)
        return [Delivered((), event)]

    def _order_streams_answer(self, answer: m.SubscriptionResponse) -> list[Any]:
        granted = set(answer.accounts)
        error = answer.error or m.ErrorDetail()
        out: list[Any] = []
        for account in self.accounts:
            if account in granted:  # even when the overall status is ERROR because of another account
                out.append(AccountAccepted(account, answer.tracking_id))
            else:
                out.append(
                    AccountRejected(account, answer.status, error.code, error.message, answer.tracking_id)
                )
        return out

    def _operations_answer(
        self, answer: m.PortfolioSubscriptionResult | m.PositionsSubscriptionResult
    ) -> list[Any]:
        out: list[Any] = []
        for status in answer.accounts:
            if status.subscription_status.name.endswith("_SUCCESS"):
                out.append(AccountAccepted(status.account_id, answer.tracking_id))
            else:
                out.append(
                    AccountRejected(status.account_id, status.subscription_status, "", "", answer.tracking_id)
                )
        return out
