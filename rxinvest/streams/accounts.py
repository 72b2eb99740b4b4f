"""An account-stream connection (order states, order trades, positions, portfolio): one request on
every connection, every event to every subscriber (see :mod:`rxinvest.streams.connection`)."""

from __future__ import annotations

from collections.abc import Callable

from rxinvest.protocol import AccountSession, Outcome
from rxinvest.streams.connection import Emit, ListenerTransport, StreamConnection
from rxinvest.streams.delivery import Mailbox

__all__ = ["AccountConnection"]


class AccountConnection(StreamConnection):
    """One account-stream connection (one stream, one set of accounts), shared by its subscribers."""

    session: AccountSession

    def __init__(
        self,
        transport_factory: ListenerTransport,
        emit: Emit,
        session: AccountSession,
        on_idle: Callable[[AccountConnection], None],
    ) -> None:
        super().__init__(transport_factory, emit)
        self.session = session
        self.stream = session.stream.value
        self._on_idle = on_idle

    def add(self, mailbox: Mailbox, *, strict: bool = False) -> None:
        with self.lock:
            self._attach(mailbox, self.session.accounts, strict)
            self._ensure_started()
        mailbox.kick()

    def remove(self, mailbox: Mailbox) -> None:
        mailbox.stop()
        with self.lock:
            self._subscribers.pop(mailbox, None)
            idle = not self._subscribers
        if idle:
            self._on_idle(self)
            self.close()

    def _boxes(self, outcome: Outcome) -> list[Mailbox]:
        return list(self._subscribers)  # every subscriber takes every account of the connection

    def wanted(self) -> bool:
        with self.lock:
            return bool(self._subscribers) and not self.shut
