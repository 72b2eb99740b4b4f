"""The command line: `rxinvest sim` serves until interrupted; `rxinvest decode` prints typed events."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from rxinvest import model as m
from tests.sim.wsclient import closed_with, first, send


def _started(process: subprocess.Popen[str]) -> tuple[str, str]:
    """The stream URL and full-access token a running `rxinvest sim` printed."""
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(5)]
    match = re.search(r"(ws://127\.0\.0\.1:\d+/ws/)", lines[0])
    assert match, lines
    token = lines[1].rsplit(" ", 1)[1].strip()
    path = "tinkoff.public.invest.api.contract.v1.MarketDataStreamService/MarketDataStream"
    return match.group(1) + path, token


def test_sim_applies_faults_and_stops_on_interrupt() -> None:
    from websockets.sync.client import connect

    command = [sys.executable, "-m", "rxinvest", "sim", "--port", "0", "--fault-next", "close_code=4008"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url, token = _started(process)
        with connect(url, subprotocols=["json", token], open_timeout=5) as ws:  # the next connection
            send(ws, m.GetMySubscriptions())
            assert closed_with(ws)[0] == 4008
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "stopping" in out


def test_sim_serves_a_third_party_client() -> None:
    from websockets.sync.client import connect

    process = subprocess.Popen(
        [sys.executable, "-m", "rxinvest", "sim", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        url, token = _started(process)
        with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5) as ws:
            send(ws, m.SubscribeLastPriceRequest(
                subscription_action=m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE,
                instruments=(m.LastPriceInstrument(instrument_id="SBER_TQBR"),),
            ))  # fmt: skip
            price = first(ws, "MarketDataStream", lambda e: isinstance(e, m.LastPrice))
        assert price.instrument_uid == "e6123145-9665-43e0-8413-cd61b8aa9b13"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_decode_prints_events_and_reports_bad_lines(tmp_path: Path) -> None:
    frames = tmp_path / "frames.jsonl"
    frames.write_text('{"trade": {"quantity": "3"}}\nnot json\n\n{"ping": {}}\n')
    result = subprocess.run(
        [sys.executable, "-m", "rxinvest", "decode", "--stream", "MarketDataStream", str(frames)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("Trade(") and "quantity=3" in result.stdout
    assert "Ping(" in result.stdout
    assert "line 2:" in result.stderr


def test_bad_faults_are_reported_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rxinvest", "sim", "--port", "0", "--fault", "close_code=4999"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "close_code" in result.stderr
    assert "Traceback" not in result.stderr
