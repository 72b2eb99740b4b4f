"""``rxinvest.notebook.views``: coalescing, stopping and errors with a hand-driven timer, then the real
proof in a real ipykernel: rate-limited refreshes under 5,000 events a second, a responsive kernel,
no ``nest_asyncio``, and the view of a re-run cell stopped."""

from __future__ import annotations

import contextvars
import json
import math
import queue
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import reactivex
from IPython.core.interactiveshell import ExecutionInfo
from reactivex.disposable import Disposable
from reactivex.subject import Subject

from rxinvest.errors import ConfigurationError
from rxinvest.notebook import views as live_module
from rxinvest.notebook.views import LiveView, live

REPO = Path(__file__).resolve().parents[2]


class ManualScheduler:
    """A periodic scheduler whose ticks the test makes."""

    def __init__(self) -> None:
        self.period: float | None = None
        self.action: Any = None
        self.disposed = False

    def schedule_periodic(self, period: float, action: Any, state: Any = None) -> Disposable:
        self.period, self.action = period, action
        return Disposable(self._dispose)

    def _dispose(self) -> None:
        self.disposed = True

    def tick(self) -> None:
        if not self.disposed:
            self.action(None)


class FakeArea:
    """An output area that keeps what it was given to show."""

    def __init__(self, initial: object) -> None:
        self.shown = [initial]

    def update(self, obj: object) -> None:
        self.shown.append(obj)

    @property
    def last(self) -> object:
        return self.shown[-1]


@pytest.fixture(autouse=True)
def no_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """No IPython shell in the test process, whatever another test may have started."""
    monkeypatch.setattr(live_module, "_get_shell", lambda: None)


def manual_view(source: Any, **kwargs: Any) -> tuple[LiveView[Any], ManualScheduler, list[FakeArea]]:
    scheduler = ManualScheduler()
    areas: list[FakeArea] = []

    def output(initial: object) -> FakeArea:
        areas.append(FakeArea(initial))
        return areas[-1]

    view = live(source, scheduler=scheduler, output=output, **kwargs)
    return view, scheduler, areas


# --- without a kernel -------------------------------------------------------------------------


def test_events_are_coalesced_into_one_refresh_per_tick() -> None:
    subject: Subject[int] = Subject()
    view, scheduler, [area] = manual_view(subject, max_rate=4)
    assert scheduler.period == 0.25
    assert "waiting" in repr(area.last)

    scheduler.tick()  # nothing arrived yet: no refresh
    assert view.refreshes == 0

    for n in range(1000):
        subject.on_next(n)
    scheduler.tick()
    assert (view.received, view.refreshes, area.shown[1:]) == (1000, 1, [999])

    scheduler.tick()  # nothing new: the area is left alone
    assert view.refreshes == 1
    subject.on_next(1000)
    scheduler.tick()
    assert (view.received, view.refreshes, area.last) == (1001, 2, 1000)
    assert view.running and view.error is None


def test_render_makes_what_is_shown() -> None:
    subject: Subject[int] = Subject()
    _, scheduler, [area] = manual_view(subject, render=lambda n: f"n={n}")
    subject.on_next(7)
    scheduler.tick()
    assert repr(area.last) == "n=7"  # a string is shown as text, without quotes
    assert "'" not in area.last._repr_html_()


@pytest.mark.parametrize("max_rate", [0, -1, math.nan, math.inf, True, "10", None])
def test_a_bad_max_rate_is_refused_before_subscribing(max_rate: Any) -> None:
    subject: Subject[int] = Subject()
    with pytest.raises(ConfigurationError, match="max_rate"):
        live(subject, max_rate=max_rate, output=FakeArea, scheduler=ManualScheduler())
    assert not subject.observers


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"render": "repr"}, "render"),
        ({"output": 3}, "output"),
        ({"scheduler": object()}, "scheduler"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    subject: Subject[int] = Subject()
    with pytest.raises(ConfigurationError, match=match):
        live(subject, **({"output": FakeArea} | kwargs))
    with pytest.raises(ConfigurationError, match="Observable"):
        live([1, 2, 3], output=FakeArea)  # type: ignore[arg-type]
    assert not subject.observers


def test_stop_is_idempotent_and_ends_everything() -> None:
    subject: Subject[int] = Subject()
    view, scheduler, [area] = manual_view(subject)
    subject.on_next(1)
    view.stop()
    view.stop()
    assert not view.running and view.wait(0)
    assert scheduler.disposed and not subject.observers
    subject.on_next(2)
    scheduler.action(None)  # a tick already under way when stop() came: shows nothing
    assert (view.refreshes, len(area.shown)) == (0, 1)


def test_a_failing_render_is_shown_once_counted_and_survived() -> None:
    subject: Subject[int] = Subject()

    def render(n: int) -> str:
        if n < 0:
            raise ZeroDivisionError(f"bad {n % 2}")
        return f"n={n}"

    view, scheduler, [area] = manual_view(subject, render=render)
    subject.on_next(1)
    scheduler.tick()
    for n in (-2, -4):  # the same failure twice: shown once
        subject.on_next(n)
        scheduler.tick()
    assert (view.render_errors, view.refreshes) == (2, 2)
    assert isinstance(view.error, ZeroDivisionError)
    shown = repr(area.last)
    assert "n=1" in shown and "render failed: ZeroDivisionError: bad 0" in shown  # last good + note
    subject.on_next(-1)  # another failure: shown
    scheduler.tick()
    assert (view.render_errors, view.refreshes) == (3, 3) and "bad 1" in repr(area.last)

    subject.on_next(5)  # a good rendering replaces the note; the view went on
    scheduler.tick()
    assert (repr(area.last), view.refreshes, view.running, scheduler.disposed) == ("n=5", 4, True, False)


def test_the_note_joins_the_text_and_html_of_the_rendering() -> None:
    class Rich:
        def __repr__(self) -> str:
            return "rich"

        def _repr_html_(self) -> str:
            return "<b>rich</b>"

    noted = live_module._Noted(Rich(), "render failed: E: <x>")
    data, _ = noted._repr_mimebundle_()
    assert data["text/plain"] == "rich\n\nrender failed: E: <x>"
    # Without a shell the rendering's text form only; the note is escaped.
    assert "&lt;x&gt;" in data["text/html"] and "<pre>rich</pre>" in data["text/html"]


def test_completion_gives_a_final_refresh_then_the_view_ends() -> None:
    subject: Subject[int] = Subject()
    view, scheduler, [area] = manual_view(subject)
    subject.on_next(1)
    subject.on_next(2)
    subject.on_completed()
    assert view.running  # the last refresh is the timer's, at the rate
    scheduler.tick()
    assert (area.last, view.refreshes, view.running, scheduler.disposed) == (2, 1, False, True)


def test_completion_without_new_items_ends_without_a_refresh() -> None:
    subject: Subject[int] = Subject()
    view, scheduler, _ = manual_view(subject)
    subject.on_next(1)
    scheduler.tick()
    subject.on_completed()
    scheduler.tick()
    assert (view.refreshes, view.running) == (1, False)


def test_an_empty_source_says_so() -> None:
    view, scheduler, [area] = manual_view(reactivex.empty())
    scheduler.tick()
    assert "without an event" in repr(area.last) and not view.running


def test_a_source_error_ends_the_view_showing_the_last_item_and_the_error() -> None:
    subject: Subject[int] = Subject()
    view, scheduler, [area] = manual_view(subject, render=lambda n: f"n={n}")
    subject.on_next(3)
    subject.on_error(RuntimeError("connection lost"))
    scheduler.tick()
    shown = repr(area.last)
    assert "n=3" in shown and "the source failed: RuntimeError: connection lost" in shown
    assert isinstance(view.error, RuntimeError) and not view.running and view.refreshes == 1


def test_headless_without_a_kernel() -> None:
    # The default output area outside a kernel shows nothing and has no display id.
    subject: Subject[int] = Subject()
    view = live(subject, scheduler=ManualScheduler())
    subject.on_next(1)
    assert view.display_id is None and view.received == 1
    view.stop()


def test_the_default_timer_thread_is_rate_limited_survives_failures_and_keeps_the_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cell = contextvars.ContextVar("cell", default="none")
    cell.set("the calling cell")
    seen: list[str] = []

    class FlakyArea(FakeArea):
        def update(self, obj: object) -> None:
            seen.append(cell.get())
            super().update(obj)
            if len(self.shown) == 2:
                raise OSError("the kernel's socket hiccuped")

    subject: Subject[int] = Subject()
    started = time.monotonic()
    view = live(subject, max_rate=20, output=FlakyArea)
    deadline = started + 0.6
    n = 0
    while time.monotonic() < deadline:
        subject.on_next(n)
        n += 1
        time.sleep(0.001)
    subject.on_completed()
    assert view.wait(timeout=5)
    elapsed = time.monotonic() - started
    assert 3 <= view.refreshes <= 20 * elapsed + 1
    assert view.received == n
    assert set(seen) == {"the calling cell"}
    assert "a refresh failed" in caplog.text  # logged, and the timer went on
    timers = [t for t in threading.enumerate() if t.name == "rxinvest-live"]
    for timer in timers:
        timer.join(timeout=2)
    assert not any(t.is_alive() for t in timers)


class FakeKernel:
    def __init__(self) -> None:
        self.cell_id: str | None = "cell-1"

    def get_parent(self) -> dict[str, Any]:
        return {"metadata": {"cellId": self.cell_id} if self.cell_id else {}}


class FakeEvents:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def register(self, event: str, function: Any) -> None:
        assert event == "pre_run_cell"
        self.callbacks.append(function)

    def pre_run_cell(self, cell_id: str | None) -> None:
        info = ExecutionInfo("x = 1", True, False, True, cell_id)
        for callback in self.callbacks:
            callback(info)


class FakeShell:
    def __init__(self) -> None:
        self.kernel = FakeKernel()
        self.events = FakeEvents()


def test_running_the_cell_again_stops_its_views(monkeypatch: pytest.MonkeyPatch) -> None:
    shell = FakeShell()
    monkeypatch.setattr(live_module, "_get_shell", lambda: shell)
    first, _, _ = manual_view(Subject())
    second, _, _ = manual_view(Subject())
    assert len(shell.events.callbacks) == 1  # one hook per shell

    shell.events.pre_run_cell("cell-2")  # another cell: nothing stops
    assert first.running and second.running
    shell.kernel.cell_id = None  # a request without a cell id: the hook's last one counts
    third, _, _ = manual_view(Subject())
    shell.events.pre_run_cell(None)
    assert third.running  # no cell id, no automatic stop
    shell.events.pre_run_cell("cell-1")
    assert not first.running and not second.running
    shell.events.pre_run_cell("cell-2")
    assert not third.running

    first.stop()  # stopping again is harmless
    shell.kernel.cell_id = "cell-1"
    fourth, _, _ = manual_view(Subject())
    fourth.stop()  # a stopped view leaves the registry
    assert not live_module._cells_by_shell[shell]._views


# --- in a real kernel ---------------------------------------------------------------------------

FEED_SECONDS = 3.0
RATE = 5000
FEED_BATCH = 50  # events the feed sends at once
MAX_RATE = 10

# A cell: a subject fed by a thread at RATE events a second, in batches, for `seconds`; its live view.
CELL = f"""
import threading, time
import reactivex.subject
from rxinvest.notebook.views import live

subject = reactivex.subject.Subject()
sent = [0]

def feed(subject=subject, sent=sent, seconds={{seconds}}, rate={RATE}, batch={FEED_BATCH}):
    start, n = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        for _ in range(batch):
            subject.on_next(n)
            n += 1
        sent[0] = n
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
    subject.on_completed()

threading.Thread(target=feed, daemon=True).start()
view = live(subject, render=lambda n: f"event {{{{n}}}}", max_rate={MAX_RATE})
"""


class Kernel:
    """A client of a real ipykernel running this interpreter, with a cell id on each request."""

    def __init__(self, tmp: Path) -> None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        spec = tmp / "kernels" / "rxinvest-test"
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "t", "language": "python"})
        )
        self.log = tmp / "kernel.log"
        self.manager = KernelManager(
            kernel_name="rxinvest-test", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)])
        )
        self._log_file = self.log.open("w")
        self.manager.start_kernel(cwd=str(REPO), stdout=self._log_file, stderr=self._log_file)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        self.iopub: list[dict[str, Any]] = []

    def send(self, code: str, cell_id: str) -> str:
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg = self.client.session.msg("execute_request", content, metadata={"cellId": cell_id})
        self.client.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def reply(self, msg_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply: dict[str, Any] = self.client.get_shell_msg(timeout=left)
            except queue.Empty:
                break
            if reply["parent_header"].get("msg_id") == msg_id:
                assert reply["content"]["status"] == "ok", reply["content"]
                return reply
        raise AssertionError(f"no reply in {timeout} s; kernel log:\n{self.log.read_text()}")

    def execute(self, code: str, cell_id: str, timeout: float = 30) -> tuple[dict[str, Any], float]:
        """Runs a cell; its reply and its round trip in seconds."""
        started = time.monotonic()
        reply = self.reply(self.send(code, cell_id), timeout)
        return reply, time.monotonic() - started

    def value(self, expression: str, cell_id: str = "probe") -> str:
        """The text/plain of ``expression`` evaluated in the kernel."""
        msg_id = self.send(expression, cell_id)
        self.reply(msg_id)
        self.drain(until_idle_of=msg_id)
        [result] = [
            m
            for m in self.iopub
            if m["msg_type"] == "execute_result" and m["parent_header"]["msg_id"] == msg_id
        ]
        return str(result["content"]["data"]["text/plain"])

    def drain(self, until_idle_of: str, timeout: float = 30) -> None:
        """Collects IOPub messages up to the kernel's going idle after request ``until_idle_of``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg: dict[str, Any] = self.client.get_iopub_msg(timeout=left)
            except queue.Empty:
                break
            self.iopub.append(msg)
            if (
                msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == until_idle_of
            ):
                return
        raise AssertionError(f"the kernel did not go idle in {timeout} s")

    def updates(self, display_id: str) -> list[datetime]:
        """The times the kernel sent an update of ``display_id``, in order."""
        return sorted(
            m["header"]["date"]
            for m in self.iopub
            if m["msg_type"] == "update_display_data"
            and m["content"]["transient"]["display_id"] == display_id
        )

    def close(self) -> None:
        try:
            self.client.stop_channels()
            self.manager.shutdown_kernel(now=False)
        finally:
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)
            self._log_file.close()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    client = Kernel(tmp_path_factory.mktemp("kernel"))
    try:
        client.execute("import reactivex.subject, rxinvest.notebook.views", cell_id="imports")  # warm
        yield client
    finally:
        client.close()


def most_in_one_second(times: list[datetime]) -> int:
    """The most of ``times`` in any window [t, t + 1 s) starting at one of them."""
    return max((sum(1 for u in times if t <= u < t + timedelta(seconds=1)) for t in times), default=0)


def test_in_a_kernel_refreshes_are_rate_limited_and_cells_stay_quick(kernel: Kernel) -> None:
    request, live_cell = kernel.execute(CELL.format(seconds=FEED_SECONDS), cell_id="live-cell")
    assert live_cell < 0.5  # live() returned at once, events flowing
    display_id = kernel.value("view.display_id").strip("'")

    # Trivial cells while 5,000 events a second flow: their round trips, request to reply.
    round_trips = []
    for _ in range(5):
        time.sleep(0.05)
        round_trips.append(kernel.execute("1 + 1", cell_id="trivial")[1])
    assert kernel.value("view.running") == "True"  # they ran while the view did
    assert statistics.median(round_trips) < 0.100, round_trips

    # The source completes: the view ends by itself (bounded wait, in the kernel).
    assert kernel.value(f"view.wait({FEED_SECONDS + 10})") == "True"
    sent = int(kernel.value("sent[0]"))
    assert sent >= FEED_SECONDS * RATE * 0.8  # the events did flow at about RATE a second
    received = int(kernel.value("view.received"))
    # All but those sent before live() subscribed: the cell's time at RATE, and the feed's first
    # batch (50 at once, as its thread starts).
    assert sent - RATE * live_cell - FEED_BATCH <= received <= sent
    assert kernel.value("view.error is None") == "True"
    refreshes = int(kernel.value("view.refreshes"))
    msg_id = kernel.send("'sync'", cell_id="probe")
    kernel.reply(msg_id)
    kernel.drain(until_idle_of=msg_id)

    updates = kernel.updates(display_id)
    assert len(updates) == refreshes
    # All sent as outputs of the live cell, those sent while other cells ran included.
    parents = {
        m["parent_header"]["msg_id"]
        for m in kernel.iopub
        if m["msg_type"] == "update_display_data" and m["content"]["transient"]["display_id"] == display_id
    }
    assert parents == {request["parent_header"]["msg_id"]}
    # At most MAX_RATE in any second, by the kernel's clock when it sent them; and it did refresh,
    # about MAX_RATE a second.
    assert most_in_one_second(updates) <= MAX_RATE, updates
    assert refreshes >= MAX_RATE * FEED_SECONDS / 3
    [final] = [
        m
        for m in kernel.iopub
        if m["msg_type"] == "update_display_data" and m["header"]["date"] == updates[-1]
    ]
    assert final["content"]["data"]["text/plain"] == f"event {sent - 1}"  # the last one shows

    # Neither nest_asyncio nor ipykernel's fork of it (nest_asyncio2, for its Tk loop only) is loaded.
    assert kernel.value("import sys; [m for m in sys.modules if m.startswith('nest_asyncio')]") == "[]"
    print(
        f"live cell: {live_cell * 1000:.1f} ms, refreshes: {refreshes}, most in one second: "
        f"{most_in_one_second(updates)}, trivial cells: "
        f"{[round(t * 1000, 1) for t in round_trips]} ms"
    )


def test_in_a_kernel_running_the_cell_again_stops_its_first_view(kernel: Kernel) -> None:
    cell = CELL.format(seconds=30.0)  # runs until stopped
    kernel.execute(cell, cell_id="rerun-cell")
    kernel.execute("first = view", cell_id="keep")
    first_id = kernel.value("first.display_id").strip("'")
    kernel.execute("1 + 1", cell_id="other")  # another cell leaves it running
    time.sleep(0.5)  # a few refreshes of the first view
    assert kernel.value("(first.running, first.refreshes >= 2)") == "(True, True)"

    rerun, _ = kernel.execute(cell, cell_id="rerun-cell")
    assert kernel.value("(first.running, view.running, view is first)") == "(False, True, False)"
    kernel.execute("view.stop(); subject.on_completed()", cell_id="cleanup")
    msg_id = kernel.send("'sync'", cell_id="probe")
    kernel.reply(msg_id)
    kernel.drain(until_idle_of=msg_id)
    assert max(kernel.updates(first_id)) < rerun["header"]["date"]  # none after its cell ran again
