"""The account streams' session (OrderStateStream, TradesStream, PositionsStream, PortfolioStream).

Sans-I/O. These streams take one request when the connection opens and then only talk. The answer
tells, account by account, what was granted; refused accounts come back as :class:`AccountRejected`.
Every data event is delivered: order states, fills, positions and portfolios are never dropped.

Gaps and clocks. When an account granted on a lost connection is granted again, its
:class:`AccountAccepted` carries the gap ``(since, until)`` on the CLIENT's clock (the ``now`` the
transport passes): ``since`` is when the lost connection last received anything, ``until`` when the
new one was granted. That is the gap the ``Gap`` and ``Recovered`` markers show. The unary API
filters by the SERVER's times (orders' ``created_at``, operations' ``date``), so recovery takes the
same gap on the server's clock, :meth:`AccountSession.server_gap`:

* the session estimates the server's clock from the pings
  (:class:`~rxinvest.protocol.liveness.ServerClock`: the offset of the latest ping). The estimate
  outlives a connection: a connection lost before its first ping (pings are periodic, so a new
  connection has usually not pinged when it is granted) keeps the one measured before it, which
  is far closer to the truth than the client's clock (the API's servers presumably keep one time);
* ``since`` is moved by the estimate as it was when the connection was lost (the first lost one,
  when the account was lost on several in a row); ``until`` by the estimate when it was granted;
* with no ping ever seen, the server's clock is unknown: the server gap is the client's one (as
  before this estimate existed). The recovery's slack (a minute) is then the only margin for the
  clocks' difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from rxinvest import model as m
from rxinvest.errors import (
    ApiError,
    ConfigurationError,
    DecodeError,
    PermissionDeniedError,
    SubscriptionRejectedError,
)
from rxinvest.protocol.events import (
    AccountAccepted,
    AccountOutcome,
    AccountRejected,
    AccountStatus,
    Delivered,
    Malformed,
    Send,
    StreamFailed,
)
from rxinvest.protocol.liveness import Liveness, ServerClock, on_server_clock
from rxinvest.wire import Stream, decode, encode

__all__ = ["ACCOUNT_STREAMS", "AccountSession"]

ACCOUNT_STREAMS = (Stream.ORDER_STATE, Stream.TRADES, Stream.POSITIONS, Stream.PORTFOLIO)
#: The API code of a refusal for want of rights: the subscriber gets PermissionDeniedError.
_NO_RIGHTS = "40002"


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
        watchdog_factor: float = 2.0,
        since: datetime | None = None,
    ) -> None:
        if stream not in ACCOUNT_STREAMS:
            raise ConfigurationError(f"{stream} is not an account stream")
        super().__init__(ping_delay, watchdog_factor)
        self.stream = stream
        self.accounts = tuple(accounts)
        self.dialect = dialect
        self.with_initial_positions = with_initial_positions
        self._granted: set[str] = set()  # accounts the current connection streams
        # Accounts streamed on a lost connection: since when (client's clock), and the estimate of the
        # server's clock then (None: no ping yet).
        # ``since``: the stream resumes one that ended then, so its first grants carry that gap.
        self._gap_since: dict[str, tuple[datetime, timedelta | None]] = (
            {} if since is None else dict.fromkeys(self.accounts, (since, None))
        )
        self._clock = ServerClock()  # the server's clock, as the latest ping tells
        self._server_gaps: dict[str, tuple[datetime, datetime]] = {}  # see server_gap()

    @property
    def server_offset(self) -> timedelta | None:
        """The server's clock minus ours as the latest ping tells (None: no ping yet)."""
        return self._clock.offset

    def server_gap(self, account_id: str) -> tuple[datetime, datetime] | None:
        """The gap of ``account_id``'s last :class:`AccountAccepted` on the server's clock, as far as
        the pings tell (see the module docstring); None if that acceptance had no gap."""
        return self._server_gaps.get(account_id)

    def request(
        self,
    ) -> (
        m.OrderStateStreamRequest
        | m.TradesStreamRequest
        | m.PositionsStreamRequest
        | m.PortfolioStreamRequest
    ):
        """The one request this stream takes, sent on every new connection."""
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

    def connected(self, now: datetime) -> list[AccountOutcome]:
        """A new connection is open: the request. Accounts granted on a lost connection remember
        since when their events may be missing: their next :class:`AccountAccepted` carries the gap."""
        if self._granted:
            lost_at = (self._last_received or now, self._clock.offset)
            # Merged, not replaced: an account refused on the lost connection keeps the gap it
            # had waiting (a resume's ``since``, an earlier loss) until it is granted again.
            for account in self._granted:
                self._gap_since.setdefault(account, lost_at)
            self._granted = set()
        self.alive(now)
        return [Send((encode(self.request(), dialect=self.dialect),))]

    def receive(self, frame: str | bytes, now: datetime) -> list[AccountOutcome]:
        self.alive(now)
        try:
            event = decode(frame, stream=self.stream)
        except DecodeError as exc:
            return [Malformed(exc)]
        if isinstance(event, m.Ping):
            if event.time is not None:
                self._clock.heard(event.time, now)
            return []
        if isinstance(event, m.RpcStatus):
            return [StreamFailed(event)]
        if isinstance(event, m.SubscriptionResponse):
            return self._order_streams_answer(event, now)
        if isinstance(event, m.PortfolioSubscriptionResult | m.PositionsSubscriptionResult):
            return self._operations_answer(event, now)
        return [Delivered((), event)]

    def _order_streams_answer(self, answer: m.SubscriptionResponse, now: datetime) -> list[AccountOutcome]:
        granted = set(answer.accounts)
        error = answer.error or m.ErrorDetail()
        out: list[AccountOutcome] = []
        for account in self.accounts:
            if account in granted:  # even when the overall status is ERROR because of another account
                out.append(self._accepted(account, answer.tracking_id, now))
            else:
                out.append(
                    self._rejected(account, answer.status, error.code, error.message, answer.tracking_id)
                )
        return out

    def _operations_answer(
        self, answer: m.PortfolioSubscriptionResult | m.PositionsSubscriptionResult, now: datetime
    ) -> list[AccountOutcome]:
        out: list[AccountOutcome] = []
        for status in answer.accounts:
            if status.subscription_status.name.endswith("_SUCCESS"):
                out.append(self._accepted(status.account_id, answer.tracking_id, now))
            else:
                out.append(
                    self._rejected(status.account_id, status.subscription_status, "", "", answer.tracking_id)
                )
        return out

    def _accepted(self, account: str, tracking_id: str, now: datetime) -> AccountAccepted:
        self._granted.add(account)
        lost = self._gap_since.pop(account, None)
        if lost is None:
            self._server_gaps.pop(account, None)
            return AccountAccepted(account, tracking_id, None)
        since, offset = lost
        self._server_gaps[account] = (
            on_server_clock(since, offset),
            on_server_clock(now, self._clock.offset),
        )
        return AccountAccepted(account, tracking_id, (since, now))

    def _rejected(
        self, account: str, status: AccountStatus, code: str, message: str, tracking_id: str
    ) -> AccountRejected:
        """The refusal of ``account``, with the error its subscribers get."""
        text = f"{self.stream.value} refused account {account}" + (f": {message}" if message else "")
        error: ApiError
        if code == _NO_RIGHTS:
            error = PermissionDeniedError(text, code=code, tracking_id=tracking_id)
        else:
            error = SubscriptionRejectedError(text, status=status, target=account, tracking_id=tracking_id)
        return AccountRejected(account, status, code, message, tracking_id, error)
