"""Record raw frames with their receive times, and replay them through the codec under virtual time.

A recorder wraps a :class:`~rxinvest.transport.base.Listener`: it sees the bytes and the time each
frame arrived, never the headers, so never a token. A replay source is a
:class:`~rxinvest.transport.base.Transport` that feeds recorded frames to a client's connection at
their recorded times on a virtual-time scheduler, so every layer above it (sessions, mailboxes,
operators) runs as it did live.

It may import the transport interface (:mod:`rxinvest.transport`), the protocol, the codec and the
model; it sits beside :mod:`rxinvest.streams`, not under it, and never opens a socket.
"""

__all__: list[str] = []
