"""Bad simulator options are a ConfigurationError (also a ValueError), found before anything starts."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from rxinvest.errors import ConfigurationError
from rxinvest.sim import CATALOGUE, Faults, Simulator
from rxinvest.sim.broker import AccountSeed, Broker
from rxinvest.sim.instruments import Instrument


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scenario": "apocalypse"}, "unknown scenario 'apocalypse'; choose from normal, quiet"),
        ({"scenario": ["normal"]}, "unknown scenario"),
        ({"host": "0.0.0.0"}, "loopback only"),
        ({"host": 127001}, "loopback only"),
        ({"speed": 0}, "speed must be a positive number, not 0"),
        ({"speed": "fast"}, "speed must be a positive number, not 'fast'"),
        ({"step": -0.1}, "step must be a positive number"),
        ({"start": datetime(2025, 11, 21, 10, 0)}, "start must be an aware datetime"),
        ({"start": "2025-11-21"}, "start must be an aware datetime"),
        ({"faults": {"drop_after": 5}}, "faults must be a Faults value"),
        ({"instruments": ["SBER"]}, "instruments must be Instrument values"),
        ({"accounts": [AccountSeed("1", 100)]}, "money 100 is not a MoneyValue"),  # type: ignore[arg-type]
        ({"accounts": [AccountSeed("1", Decimal(1)), AccountSeed("1", Decimal(2))]}, "duplicate account 1"),
        ({"accounts": [AccountSeed("1", Decimal(1), {"NOPE": 1})]}, "cannot hold 1 of NOPE"),
    ],
)
def test_bad_simulator_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Simulator(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"close_code": 4999}, r"close_code must be one of \(4003"),
        ({"drop_after": "many"}, "drop_after must be a number, not 'many'"),
        ({"internal_errors": 1.5}, r"internal_errors is a probability in \[0, 1\], not 1.5"),
        ({"crossed_books": None}, "crossed_books must be a number, not None"),
        ({"malformed_kinds": "invalid_json+gibberish"}, r"unknown malformed kinds \['gibberish'\]"),
    ],
)
def test_bad_fault_values(faults: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Faults(**faults)  # type: ignore[arg-type]


def test_bad_faults_from_the_command_line_name_the_item() -> None:
    with pytest.raises(
        ConfigurationError, match=r"bad fault 'explode=1': expected NAME=VALUE with NAME one of"
    ):
        Faults.parse(["explode=1"])
    with pytest.raises(ConfigurationError, match=r"bad fault 'drop_after': expected NAME=VALUE"):
        Faults.parse(["drop_after"])
    with pytest.raises(
        ConfigurationError, match=r"bad faults \['stall_at=soon'\]: stall_at must be a number"
    ):
        Faults.parse(["stall_at=soon"])


def test_instruments_off_their_tick_grid_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="off the tick grid"):
        Instrument("F", "U", "T", "C", 1, Decimal("0.5"), "share", Decimal("10.25"), "name")
    with pytest.raises(ConfigurationError, match="must be Decimal"):
        Instrument("F", "U", "T", "C", 1, Decimal("0.5"), "share", 10.5, "name")  # type: ignore[arg-type]


def test_argument_errors_of_the_broker() -> None:
    broker = Broker(CATALOGUE, [AccountSeed("1", Decimal(100))], seed=1)
    now = datetime.now().astimezone()
    with pytest.raises(ConfigurationError, match="no MoneyValue form"):
        broker.external(account_id="1", amount=Decimal("0.0000000001"), now=now)
    with pytest.raises(ConfigurationError, match="no MoneyValue form"):
        broker.external(account_id="1", amount=1.5, now=now)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="now must be an aware datetime"):
        broker.external(account_id="1", amount=Decimal(1), now=datetime(2025, 1, 1))


def test_configuration_errors_are_value_errors_for_old_callers() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        Simulator(scenario="apocalypse")


def test_serve_lists_exactly_the_options_of_simulator() -> None:
    import inspect

    from rxinvest.sim import serve

    def options(function: object) -> list[tuple[str, object, object, object]]:
        parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
        return [(p.name, p.kind, p.default, p.annotation) for p in parameters]

    assert options(serve) == options(Simulator)
    assert {kind for _, kind, _, _ in options(serve)} == {inspect.Parameter.KEYWORD_ONLY}
    documented = inspect.getdoc(serve) or ""
    for name, *_ in options(serve):
        assert f"``{name}``" in documented, name


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ({"token": ""}, "token must not be empty"),
        ({"readonly_token": ""}, "readonly_token must not be empty"),
        ({"token": 12345}, "token must be a str, not int"),
        ({"token": "t.секрет"}, r"token must hold visible ASCII characters only \(no spaces\): character 3"),
        ({"token": "t.a b"}, "character 4 is not one"),
        ({"token": "t.tab\t"}, "character 6 is not one"),
        ({"token": "t.same", "readonly_token": "t.same"}, "token and readonly_token must differ"),
    ],
)
def test_bad_tokens_are_refused_without_repeating_them(tokens: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        Simulator(**tokens)  # type: ignore[arg-type]
    secret = str(next(iter(tokens.values())))
    assert len(secret) < 3 or secret not in str(caught.value)


def test_tokens_given_are_kept_and_tokens_not_given_are_drawn() -> None:
    given = Simulator(token="t.full", readonly_token="t.read")
    assert (given.token, given.readonly_token) == ("t.full", "t.read")
    drawn, again = Simulator(), Simulator()
    assert drawn.token != again.token
    assert drawn.readonly_token != again.readonly_token
    assert Simulator(token="t.full").token == "t.full"


@pytest.mark.parametrize("port", [-1, 65536, True, "8765", 80.0])
def test_bad_ports_are_refused(port: object) -> None:
    with pytest.raises(ConfigurationError, match=r"port must be an int from 0 \(any free port\) to 65535"):
        Simulator(port=port)  # type: ignore[arg-type]


def test_a_port_in_use_is_a_configuration_error_when_starting() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        simulator = Simulator(port=port, timeout=5.0)
        with pytest.raises(
            ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}: address already in use"
        ):
            simulator.start()


def test_faults_of_a_connection_that_is_not_open_are_a_configuration_error() -> None:
    from rxinvest.sim import serve

    with serve(manual=True) as sim:
        with pytest.raises(ConfigurationError, match="no open connection 7"):
            sim.set_connection_faults(7, Faults())
        with pytest.raises(ConfigurationError, match="no open connection 7"):
            sim.my_subscriptions(7)
        with pytest.raises(ConfigurationError, match="faults must be a Faults value"):
            sim.set_connection_faults(1, {"drop_after": 1})  # type: ignore[arg-type]
