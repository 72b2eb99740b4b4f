"""The simulator's REST gateway: the unary methods gap recovery calls, over HTTP on loopback.

``POST {rest_url}tinkoff.public.invest.api.contract.v1.<Service>/<Method>`` with a JSON body, as the
real gateway takes it (:class:`rxinvest.wire.Unary` lists the methods, :data:`rxinvest.wire.UNARY_TYPES`
their classes; bodies are read and written by :mod:`rxinvest.wire` only). It listens on the
simulator's host, on a port of its own (the WebSocket server cannot answer a POST).

Two parts, as for the streams: :class:`RestGateway` decides every answer (sans-I/O: a request in,
an :class:`Answer` out) and runs on the simulator's event loop, the one owner of the broker and
market state, so a read never races a market step; :class:`RestService` is the I/O shell, a stdlib
``ThreadingHTTPServer`` whose handler threads hop onto the loop for each call.

Rules, in the order they are applied:

* a method other than POST: HTTP 405; a path that is no method's: 404, gRPC code 12, "12001";
* a fault queued by :meth:`RestService.fault` (``Simulator.fault_rest``): the call fails with it;
* the token, as on the streams (``Authorization: Bearer <token>``): none or unknown gives 401,
  code 16, "40003"; the read-only (market data) token 403, code 7, "40002";
* a body that does not decode, or too large: 400, code 3, "30102"; a missing ``account_id`` 400,
  "30021"; a missing ``order_id`` 400, "30027"; a ``limit`` outside 1..1000 400, "30069"; ``to``
  before ``from`` 400, "30012"; an unknown cursor 400, "30102";
* an unknown account: 404, code 5, "50004"; an unknown order: 404, code 5, "50005"; an unknown
  instrument: 404, code 5, "50002".

Error bodies are ``{"code", "message", "description"}`` (:func:`rxinvest.wire.encode_unary_error`);
answers carry proto3 defaults too unless the simulator's ``emit_defaults`` is off, and every answer
has an ``x-tracking-id`` header. Tokens never reach a log: the handler logs nothing.

Simulator conventions (the API documents none of these):

* **Operations.** GetOperationsByCursor lists one operation per fill (BUY or SELL, EXECUTED, its
  ``trades_info`` one trade whose ``num`` is the fill's trade id; quantity in units, price per unit
  in roubles, ``payment`` negative for a buy), one per external money movement (INPUT or OUTPUT,
  DIVIDEND, COUPON or TAX by its kind) and one per securities transfer (INPUT_SECURITIES or
  OUTPUT_SECURITIES, EXECUTED, its instrument's fields, ``quantity`` and ``quantity_done`` the units
  moved (positive both ways), ``payment`` 0 rub, no price and no trades). **An operation's ``id`` is
  the order id of its fill** (the real API links operations to orders by no documented field); a
  movement's ``id`` is its cursor. A fill's cursor is its trade id, a money movement's ``M<n>``, a
  securities transfer's ``S<n>`` (its number in the account, from 1).
* **Order and paging.** Newest first: by time, and at one time the later recorded first (at the
  same instant, fills are taken as older than money movements, and those as older than securities
  transfers: the broker keeps no order across its records). ``from`` is inclusive and
  ``to`` exclusive; a ``cursor`` names the first item of the page it asks for, and ``next_cursor``
  the first item of the next page (``""`` with ``has_next`` false on the last page). ``limit``
  absent or 0 is 100. New operations are newer than any cursor, so paging a listing that grows
  still returns each item of the first page's listing exactly once.
* **Orders.** GetOrders lists the account's active orders; with ``advanced_filters``, the orders
  created today (the simulator's UTC date) in ``[from, to)`` whose status is one of
  ``execution_status`` (any status if it is empty), final ones included, oldest first; orders of
  earlier days are in no filtered answer. GetOrderState any order the broker knows, active
  or final. A snapshot's ``stages`` are its fills (lots, price per unit in roubles);
  ``executed_order_price`` and ``total_order_amount`` are what the fills cost, ``average_position_price``
  their average price per unit; commissions are zero (not modelled); ``price_type`` is ignored.
* **Portfolio.** Valued in roubles only: a ``currency`` of USD or EUR is refused (400, "30102").
"""

from __future__ import annotations

import collections
import itertools
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import attrs
from websockets.datastructures import Headers

from rxinvest import model as m
from rxinvest.errors import ConfigurationError, DecodeError
from rxinvest.sim import handshake
from rxinvest.sim.broker import RUB_FIGI, Broker, Fill, Movement, SecuritiesMovement, unit_value
from rxinvest.sim.instruments import Instrument, InstrumentIndex
from rxinvest.sim.market import Market
from rxinvest.wire import Unary, decode_unary_request, encode_unary, encode_unary_error

__all__ = ["MAX_BODY", "Answer", "RestControls", "RestGateway", "RestService"]

#: The largest request body read, in bytes; a larger one is refused unread (the requests are tiny).
MAX_BODY = 1 << 20
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_METHODS = {f"/rest/{method.path}": method for method in Unary}
_RUB = "rub"
_NANO = Decimal("1e-9")

# gRPC status codes of the answers (google.rpc.Code).
_INVALID_ARGUMENT, _NOT_FOUND, _PERMISSION_DENIED, _UNIMPLEMENTED, _UNAUTHENTICATED = 3, 5, 7, 12, 16
# The gRPC code a fault's HTTP status stands for, as grpc-gateway maps them the other way round.
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1, 500: 13, 501: 12, 503: 14, 504: 4}
_UNKNOWN = 2

_INSTRUMENT_KINDS = {
    "bond": m.InstrumentType.INSTRUMENT_TYPE_BOND,
    "share": m.InstrumentType.INSTRUMENT_TYPE_SHARE,
    "currency": m.InstrumentType.INSTRUMENT_TYPE_CURRENCY,
    "etf": m.InstrumentType.INSTRUMENT_TYPE_ETF,
    "futures": m.InstrumentType.INSTRUMENT_TYPE_FUTURES,
    "sp": m.InstrumentType.INSTRUMENT_TYPE_SP,
    "option": m.InstrumentType.INSTRUMENT_TYPE_OPTION,
}
_OpType = m.OperationType
_MOVEMENT_TYPES = {"dividend": _OpType.OPERATION_TYPE_DIVIDEND, "coupon": _OpType.OPERATION_TYPE_COUPON}
_EXECUTED = m.OperationState.OPERATION_STATE_EXECUTED


class SimState(Protocol):
    """What the gateway reads of the simulator (``Simulator`` has it all)."""

    token: str
    readonly_token: str
    broker: Broker
    market: Market
    index: InstrumentIndex
    emit_defaults: bool

    def clock(self) -> datetime: ...


@attrs.frozen
class Answer:
    """An HTTP answer: status, JSON body, extra headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class _Refused(Exception):
    """Internal: the call fails with this HTTP status, gRPC code, API code and description."""

    def __init__(self, status: int, code: int, message: str, description: str) -> None:
        super().__init__(description)
        self.answer = Answer(status, encode_unary_error(code, message, description))


def _bad(message: str, description: str) -> _Refused:
    return _Refused(400, _INVALID_ARGUMENT, message, description)


class RestGateway:
    """Decides the answer to each REST call (the module docstring lists the rules); loop-owned.

    Not thread-safe by design: every method runs on the simulator's event loop.
    """

    def __init__(self, sim: SimState) -> None:
        self._sim = sim
        self._faults: collections.deque[tuple[int, str]] = collections.deque()
        self._calls: collections.Counter[str] = collections.Counter()

    def fault(self, count: int, status: int, code: str) -> None:
        """The next ``count`` calls to a method fail with HTTP ``status`` and API error ``code``."""
        self._faults.extend([(status, code)] * count)

    def calls(self) -> dict[str, int]:
        """Calls received per method name (faulted and refused ones included)."""
        return dict(self._calls)

    def handle(self, verb: str, path: str, authorization: str | None, body: bytes) -> Answer:
        """The answer to one HTTP request: ``verb`` and ``path`` from its request line (a query
        string is ignored), the ``Authorization`` header's value, the body."""
        method = _METHODS.get(path.split("?", 1)[0])
        if verb != "POST":
            description = "the REST gateway takes POST only"
            body = encode_unary_error(_UNIMPLEMENTED, "12001", description)
            return Answer(HTTPStatus.METHOD_NOT_ALLOWED, body, (("Allow", "POST"),))
        if method is None:
            return _Refused(404, _UNIMPLEMENTED, "12001", "no method at this path").answer
        self._calls[method.value] += 1
        if self._faults:
            status, code = self._faults.popleft()
            return Answer(
                status, encode_unary_error(_GRPC_CODES.get(status, _UNKNOWN), code, "injected fault")
            )
        try:
            return Answer(
                200,
                encode_unary(
                    self._answer(method, authorization, body), include_defaults=self._sim.emit_defaults
                ),
            )
        except _Refused as refused:
            return refused.answer

    def _answer(self, method: Unary, authorization: str | None, body: bytes) -> Any:
        sim = self._sim
        headers = Headers([("Authorization", authorization)] if authorization is not None else [])
        access = handshake.access(headers, full_token=sim.token, readonly_token=sim.readonly_token)
        if access is None:
            raise _Refused(401, _UNAUTHENTICATED, "40003", "authentication token is missing or invalid")
        if access != "full":
            raise _Refused(403, _PERMISSION_DENIED, "40002", "this token may read market data only")
        try:
            request = decode_unary_request(method, body)
        except DecodeError as exc:
            raise _bad("30102", f"malformed request body: {exc}") from None
        account_id: str = request.account_id
        if not account_id:
            raise _bad("30021", "missing parameter: account_id")
        if account_id not in sim.broker.accounts:
            raise _Refused(404, _NOT_FOUND, "50004", "account not found")
        if method is Unary.GET_ORDERS:
            return self._orders(request)
        if method is Unary.GET_ORDER_STATE:
            return self._order_state(request)
        if method is Unary.GET_POSITIONS:
            return sim.broker.positions(account_id, sim.clock())
        if method is Unary.GET_PORTFOLIO:
            if request.currency not in (None, m.CurrencyRequest.RUB):
                raise _bad("30102", "the simulator values portfolios in roubles only")
            return sim.broker.portfolio(account_id, sim.market.quotes())
        return self._operations(request)

    # --- orders ------------------------------------------------------------------------------------

    def _orders(self, request: m.GetOrdersRequest) -> m.GetOrdersResponse:
        broker, filters = self._sim.broker, request.advanced_filters
        if filters is None:
            active = broker.active_orders(request.account_id)
            return m.GetOrdersResponse(orders=tuple(map(self._snapshot, active)))
        today = self._sim.clock().date()
        chosen = [
            state
            for state in broker.orders(request.account_id)
            if state.created_at is not None
            and state.created_at.date() == today
            and (filters.from_ is None or filters.from_ <= state.created_at)
            and (filters.to is None or state.created_at < filters.to)
            and (not filters.execution_status or state.execution_report_status in filters.execution_status)
        ]
        return m.GetOrdersResponse(orders=tuple(map(self._snapshot, chosen)))

    def _order_state(self, request: m.GetOrderStateRequest) -> m.OrderSnapshot:
        if not request.order_id:
            raise _bad("30027", "missing parameter: order_id")
        broker = self._sim.broker
        if request.order_id_type is m.OrderIdType.ORDER_ID_TYPE_REQUEST:
            states = broker.orders(request.account_id)
            state = next((s for s in states if s.order_request_id == request.order_id), None)
        else:
            state = broker.order(request.account_id, request.order_id)
        if state is None:
            raise _Refused(404, _NOT_FOUND, "50005", "order not found")
        return self._snapshot(state)

    def _snapshot(self, state: m.OrderState) -> m.OrderSnapshot:
        """The OrdersService view of an order's latest stream state and its fills."""
        instrument = self._sim.index.get(state.instrument_uid)
        fills = [f for f in self._sim.broker.fills(state.account_id) if f.order_id == state.order_id]
        spent = sum((f.amount for f in fills), Decimal(0))
        units = sum(f.units for f in fills)
        zero = _rub(Decimal(0))
        return m.OrderSnapshot(
            order_id=state.order_id,
            execution_report_status=state.execution_report_status,
            lots_requested=state.lots_requested,
            lots_executed=state.lots_executed,
            initial_order_price=state.initial_order_price or zero,
            executed_order_price=_rub(spent),
            total_order_amount=_rub(spent),  # commissions are not modelled
            # the API gives money to the nano (9 places): a mean price is rounded to it
            average_position_price=_rub((spent / units).quantize(_NANO) if units else Decimal(0)),
            initial_commission=zero,
            executed_commission=zero,
            figi=instrument.figi if instrument else "",
            direction=state.direction,
            initial_security_price=state.order_price or zero,
            stages=tuple(
                m.OrderStage(
                    price=_rub(_unit_price(instrument, f)),
                    quantity=f.lots,
                    trade_id=f.trade_id,
                    execution_time=f.time,
                )
                for f in fills
            ),
            service_commission=zero,
            currency=state.currency,
            order_type=state.order_type,
            order_date=state.created_at,
            instrument_uid=state.instrument_uid,
            order_request_id=state.order_request_id or "",
        )

    # --- operations --------------------------------------------------------------------------------

    def _operations(self, request: m.GetOperationsByCursorRequest) -> m.GetOperationsByCursorResponse:
        limit = DEFAULT_LIMIT if not request.limit else request.limit
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad("30069", f"limit must be from 1 to {MAX_LIMIT}")
        start, end = request.from_, request.to
        if start is not None and end is not None and end < start:
            raise _bad("30012", "`to` can't be less than `from`")
        uid = None
        if request.instrument_id:
            instrument = self._sim.index.get(request.instrument_id)
            if instrument is None:
                raise _Refused(404, _NOT_FOUND, "50002", "instrument not found")
            uid = instrument.uid
        types = frozenset(request.operation_types)
        state = request.state if request.state is not m.OperationState.OPERATION_STATE_UNSPECIFIED else None
        items = [
            item
            for item in self._listing(request.account_id, trades=not request.without_trades)
            if (start is None or item.date is None or item.date >= start)
            and (end is None or item.date is None or item.date < end)
            and (uid is None or item.instrument_uid == uid)
            and (not types or item.type in types)
            and (state is None or item.state is state)
        ]
        first = 0
        if request.cursor:
            first = next((i for i, item in enumerate(items) if item.cursor == request.cursor), -1)
            if first < 0:
                raise _bad("30102", "unknown cursor")
        page = items[first : first + limit]
        has_next = first + limit < len(items)
        return m.GetOperationsByCursorResponse(
            has_next=has_next, next_cursor=items[first + limit].cursor if has_next else "", items=tuple(page)
        )

    def _listing(self, account_id: str, *, trades: bool) -> list[m.OperationItem]:
        """Every operation of the account, newest first (the module docstring's order)."""
        broker = self._sim.broker
        dated: list[tuple[datetime, int, int, m.OperationItem]] = [
            (fill.time, 0, i, self._fill_item(account_id, fill, trades=trades))
            for i, fill in enumerate(broker.fills(account_id))
        ]
        dated += [
            (movement.time, 1, i, _movement_item(account_id, movement, f"M{i + 1}"))
            for i, movement in enumerate(broker.movements(account_id))
        ]
        dated += [
            (movement.time, 2, i, self._securities_item(account_id, movement, f"S{i + 1}"))
            for i, movement in enumerate(broker.securities_movements(account_id))
        ]
        dated.sort(key=lambda entry: entry[:3], reverse=True)
        return [item for *_, item in dated]

    def _fill_item(self, account_id: str, fill: Fill, *, trades: bool) -> m.OperationItem:
        instrument = self._sim.index.get(fill.instrument_uid)
        buy = fill.direction is m.OrderDirection.ORDER_DIRECTION_BUY
        price = _rub(_unit_price(instrument, fill))
        trade = m.OperationItemTrade(num=fill.trade_id, date=fill.time, quantity=fill.units, price=price)
        return m.OperationItem(
            cursor=fill.trade_id,
            broker_account_id=account_id,
            id=fill.order_id,  # the simulator's convention: see the module docstring
            name=f"{'Buy' if buy else 'Sell'} {instrument.ticker if instrument else fill.instrument_uid}",
            date=fill.time,
            type=_OpType.OPERATION_TYPE_BUY if buy else _OpType.OPERATION_TYPE_SELL,
            state=_EXECUTED,
            **_instrument_fields(instrument, fill.instrument_uid),
            payment=_rub(-fill.amount if buy else fill.amount),
            price=price,
            commission=_rub(Decimal(0)),
            quantity=fill.units,
            quantity_done=fill.units,
            trades_info=m.OperationItemTrades(trades=(trade,)) if trades else None,
        )

    def _securities_item(self, account_id: str, movement: SecuritiesMovement, cursor: str) -> m.OperationItem:
        instrument = self._sim.index.get(movement.instrument_uid)
        incoming = movement.units > 0
        units = abs(movement.units)
        return m.OperationItem(
            cursor=cursor,
            broker_account_id=account_id,
            id=cursor,
            name=f"{'Input' if incoming else 'Output'} of securities "
            f"{instrument.ticker if instrument else movement.instrument_uid}",
            date=movement.time,
            type=_OpType.OPERATION_TYPE_INPUT_SECURITIES
            if incoming
            else _OpType.OPERATION_TYPE_OUTPUT_SECURITIES,
            state=_EXECUTED,
            **_instrument_fields(instrument, movement.instrument_uid),
            payment=_rub(Decimal(0)),
            quantity=units,
            quantity_done=units,
        )


def _instrument_fields(instrument: Instrument | None, uid: str) -> dict[str, Any]:
    """The instrument fields of an operation on ``instrument`` (uid ``uid``)."""
    kind = instrument.kind if instrument else ""
    return {
        "instrument_uid": uid,
        "figi": instrument.figi if instrument else "",
        "instrument_type": kind,
        "instrument_kind": _INSTRUMENT_KINDS.get(kind, m.InstrumentType.INSTRUMENT_TYPE_UNSPECIFIED),
        "position_uid": instrument.position_uid if instrument else "",
    }


def _movement_item(account_id: str, movement: Movement, cursor: str) -> m.OperationItem:
    incoming = movement.amount > 0
    default = _OpType.OPERATION_TYPE_INPUT if incoming else _OpType.OPERATION_TYPE_OUTPUT
    kind = _MOVEMENT_TYPES.get(movement.kind, default)
    if movement.kind == "tax" and not incoming:
        kind = _OpType.OPERATION_TYPE_TAX
    return m.OperationItem(
        cursor=cursor,
        broker_account_id=account_id,
        id=cursor,
        name=movement.kind,
        date=movement.time,
        type=kind,
        state=_EXECUTED,
        figi=RUB_FIGI,
        instrument_type="currency",
        instrument_kind=m.InstrumentType.INSTRUMENT_TYPE_CURRENCY,
        payment=_rub(movement.amount),
    )


def _rub(amount: Decimal) -> m.Money:
    return m.Money(amount, _RUB)


def _unit_price(instrument: Instrument | None, fill: Fill) -> Decimal:
    """Roubles per unit (a bond's exchange price is percent of nominal)."""
    return unit_value(instrument, fill.price) if instrument else fill.amount / fill.units


# --- the HTTP shell ----------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler waiting for a stopped loop never holds the process
    answer: Callable[[str, str, str | None, bytes], Answer]


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the gateway (on the loop), writes its answer. Logs nothing: the
    default log lines would be noise in tests, and headers hold tokens."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: clients pool their connections
    server_version = "rxinvest-sim"
    sys_version = ""

    def do_POST(self) -> None:
        self._serve("POST")

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, verb: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True  # the body, if any, is left unread
            message = f"a body of 0 to {MAX_BODY} bytes, with its Content-Length, is required"
            self._write(Answer(400, encode_unary_error(_INVALID_ARGUMENT, "30102", message)))
            return
        body = self.rfile.read(length)
        try:
            answer = self.server.answer(verb, self.path, self.headers.get("Authorization"), body)
        except (RuntimeError, TimeoutError):  # the simulator is stopping, or stuck
            answer = Answer(503, encode_unary_error(14, "70001", "the simulator is not running"))
        self._write(answer)

    def _write(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("x-tracking-id", f"sim-{next(_TRACKING_IDS)}")
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


_TRACKING_IDS = itertools.count(1)


class RestService:
    """The REST gateway's HTTP server on ``host`` (a free port), on a daemon thread of its own.

    ``call`` runs a function on the simulator's loop and waits for it (``Simulator._call``): every
    request hops onto the loop there, so the gateway reads state the loop alone changes.
    """

    def __init__(self, sim: SimState, host: str, call: Callable[[Callable[[], Any]], Any]) -> None:
        self._gateway = RestGateway(sim)
        self._host = host
        self._call = call
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/rest/"

    def start(self) -> None:
        """Listen and serve; a ConfigurationError if the host cannot be bound."""
        server_class = _Server6 if ":" in self._host else _Server
        try:
            server = server_class((self._host, 0), _Handler)
        except OSError as exc:
            raise ConfigurationError(f"cannot serve REST on {self._host}: {exc.strerror or exc}") from exc
        gateway = self._gateway
        server.answer = lambda *request: self._call(lambda: gateway.handle(*request))
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="rxinvest-sim-rest", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop listening (idempotent). Not on the loop: handlers may be waiting for it."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join(timeout)

    def fault(self, count: int, status: int, code: str) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigurationError(f"count must be an int >= 0, not {count!r}")
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ConfigurationError(f"status must be an HTTP error status (400-599), not {status!r}")
        if not isinstance(code, str):
            raise ConfigurationError(f"code must be an API error code as text, not {code!r}")
        self._call(lambda: self._gateway.fault(count, status, code))

    def calls(self) -> dict[str, int]:
        result: dict[str, int] = self._call(self._gateway.calls)
        return result


class RestControls:
    """The REST controls of :class:`~rxinvest.sim.Simulator` (a base class, so that the shell in
    ``sim/server.py`` stays short). Thread-safe: they run on the simulator's loop."""

    _rest: RestService

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:<port>/rest/``: the unary methods' base URL (a port of its own, so not
        ``rest_base_url(base_url)``). Port 0 until the simulator starts."""
        return self._rest.url

    def fault_rest(self, count: int = 1, *, status: int = 503, code: str = "70001") -> None:
        """The next ``count`` REST calls to a method fail with HTTP ``status`` and the error body of
        API ``code`` (its gRPC code follows the status: 503 is 14 UNAVAILABLE, 500 13 INTERNAL, 429 8
        RESOURCE_EXHAUSTED ...). They fail before the token is checked. Added to those queued."""
        self._rest.fault(count, status, code)

    def rest_calls(self) -> dict[str, int]:
        """REST calls received so far per method name ("GetOrders" ...), faulted and refused ones
        included (a wrong verb or path counts for no method)."""
        return self._rest.calls()
