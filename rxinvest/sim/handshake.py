"""The opening handshake: which stream a path serves, which subprotocol to speak, what a token may
do. Plain decisions, and the websockets hooks the server (:mod:`rxinvest.sim.server`) passes on.

Rules, as the proxy's (spec §1):

* streams live at ``/ws/<service path>``; a query string is ignored; any other path is HTTP 404;
* of the offered subprotocols, ``json-proto`` is chosen, else ``json``, else none (``json`` then);
* the token comes in ``Authorization: Bearer <token>`` or as a ``Sec-WebSocket-Protocol`` value
  besides the dialect; the first known one decides: full access, or read market data only. An
  offered token that is not ASCII is unknown (the simulator's tokens are ASCII: see
  :func:`checked_token`), never an error of the handler;
* tokens never reach a log: :data:`LOG`, the logger to give websockets, hides them from its DEBUG
  lines (it logs every header).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from rxinvest.errors import ConfigurationError
from rxinvest.sim.session import Access
from rxinvest.wire import Stream

__all__ = ["LOG", "access", "checked_token", "refuse_unknown_paths", "select_subprotocol", "stream_at"]

_STREAMS = {f"/ws/{stream.path}": stream for stream in Stream}
_DIALECTS = ("json-proto", "json")  # in order of preference


def stream_at(path: str) -> Stream | None:
    """The stream served at ``path`` (a request target, query string allowed), or None."""
    return _STREAMS.get(path.split("?", 1)[0])


def refuse_unknown_paths(connection: ServerConnection, request: Request) -> Response | None:
    """websockets' ``process_request`` hook: HTTP 404 where no stream is served."""
    if stream_at(request.path) is None:
        return connection.respond(HTTPStatus.NOT_FOUND, f"no stream at {request.path.split('?', 1)[0]}\n")
    return None


def select_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """websockets' ``select_subprotocol`` hook: the dialect to speak, of those the client offered."""
    for choice in _DIALECTS:
        if choice in offered:
            return Subprotocol(choice)
    return None


def access(headers: Headers, *, full_token: str, readonly_token: str) -> Access | None:
    """What the token in ``headers`` may do, or None without a known token."""
    tokens = []
    authorization = headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        tokens.append(authorization[7:].strip())
    offered = [p.strip() for value in headers.get_all("Sec-WebSocket-Protocol") for p in value.split(",")]
    tokens += [p for p in offered if p and p not in _DIALECTS]
    for token in tokens:  # compared in constant time: the simulator's tokens are secrets too
        if not token.isascii():  # compare_digest refuses non-ASCII text; it cannot match anyway
            continue
        if secrets.compare_digest(token, full_token):
            return "full"
        if secrets.compare_digest(token, readonly_token):
            return "readonly"
    return None


def checked_token(name: str, token: object) -> str:
    """``token`` if it can be one of the simulator's tokens: a non-empty string of visible ASCII
    characters (no spaces), as an ``Authorization`` header carries it; else a ConfigurationError
    named ``name`` that never repeats the token."""
    if not isinstance(token, str):
        raise ConfigurationError(f"{name} must be a str, not {type(token).__name__}")
    if not token:
        raise ConfigurationError(f"{name} must not be empty")
    bad = next((i for i, c in enumerate(token) if not (c.isascii() and c.isprintable()) or c == " "), None)
    if bad is not None:
        raise ConfigurationError(
            f"{name} must hold visible ASCII characters only (no spaces): character {bad + 1} is not one"
        )
    return token


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_address(host: object, port: object) -> None:
    """Where the simulator may listen: loopback only, a port from 0 (any free one) to 65535."""
    if not isinstance(host, str) or host not in LOOPBACK:
        raise ConfigurationError(
            f"the simulator serves on loopback only ({', '.join(LOOPBACK)}), not {host!r}"
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"port must be an int from 0 (any free port) to 65535, not {port!r}")


def issue_tokens(token: str | None, readonly_token: str | None) -> tuple[str, str]:
    """The simulator's full-access and market-data-only tokens: those given (checked), or random
    ones. They must differ, else the read-only token would have full access."""
    full = f"sim-full-{secrets.token_hex(12)}" if token is None else checked_token("token", token)
    readonly = (
        f"sim-readonly-{secrets.token_hex(12)}"
        if readonly_token is None
        else checked_token("readonly_token", readonly_token)
    )
    if full == readonly:
        raise ConfigurationError("token and readonly_token must differ")
    return full, readonly


class _RedactHeaders(logging.Filter):
    """Keeps tokens out of websockets' DEBUG handshake logs (it logs every header)."""

    _SECRET = ("authorization", "sec-websocket-protocol")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() in self._SECRET:
            record.args = (args[0], "<redacted>")
        return True


#: The logger of websockets' own messages (handshakes included): tokens redacted.
LOG = logging.getLogger("rxinvest.sim.websockets")
LOG.addFilter(_RedactHeaders())
