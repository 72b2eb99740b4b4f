"""Live views: one output area that follows an Observable, refreshed in place a few times a second.

``view = live(client.quotes(...))`` shows the latest item of the stream under the cell and keeps it
current while you go on working in other cells.

Rules of this module:

* **Events are coalesced.** An event only stores itself as the latest item and counts itself, on
  whatever thread delivers it (rxinvest's delivery threads, a simulator's, yours); nothing is
  rendered or sent per event, so 5,000 events a second cost a lock and an assignment each.
* **Refreshes are rate-limited.** A timer refreshes the output area, and only when an item arrived
  since the previous refresh: none while the stream is quiet. The view's own timer (a daemon
  thread) waits ``1 / max_rate`` seconds after each refresh has been sent before it looks again, so
  any second holds at most ``max_rate`` refreshes however long rendering takes; a slow ``render``
  lowers the rate, it never queues work. With a ``scheduler`` of yours, its ``schedule_periodic``
  of period ``1 / max_rate`` seconds sets the pace instead. ``render`` runs on the timer's thread,
  never on the source's and never concurrently with itself.
* **The kernel stays responsive.** :func:`live` subscribes, shows the output area and returns;
  nothing then runs on the kernel's main thread but a ``pre_run_cell`` hook of a few lookups. No
  event loop is run or nested: ``nest_asyncio`` is neither needed nor imported.
* **One output area, updated in place**: ``IPython.display.display(..., display_id=True)`` once,
  in the calling cell, then ``update`` from the timer. The timer runs in a copy of the calling
  cell's context (:mod:`contextvars`), so ipykernel sends the updates as outputs of that cell
  whichever cell is executing at the time.
* **A view ends** when you call :meth:`LiveView.stop`, when the cell that created it is executed
  again (IPython's ``pre_run_cell`` event, matched by cell id), or when the source completes or
  fails: then a final refresh shows the last item (and the error). A front-end that sends no cell
  id (terminal IPython, some clients) gives no automatic stop on re-run: stop the view yourself.
* **Errors never kill a view's timer.** An error of the source ends the view; its last refresh
  shows the last item with a note of the error, and :attr:`LiveView.error` holds it. An exception
  from ``render`` is shown once in the output area, with the last good rendering, counted in
  :attr:`LiveView.render_errors` and kept in :attr:`LiveView.error`; the view goes on, and the next
  good rendering replaces the note. Bad arguments raise :class:`~rxinvest.errors.ConfigurationError`
  before anything is subscribed.
* **Outside a kernel** (plain Python, terminal IPython) a view is headless: it subscribes, counts,
  renders on its timer and shows nothing, so a notebook's code also runs as a script.
"""

from __future__ import annotations

import contextvars
import html
import logging
import math
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from rxinvest.errors import ConfigurationError

__all__ = ["LiveView", "OutputArea", "live"]

log = logging.getLogger("rxinvest.notebook")

_T = TypeVar("_T")


class OutputArea(Protocol):
    """Where a view shows its renderings: an IPython ``DisplayHandle`` or anything with ``update``.

    ``update`` is called from the view's timer thread, at most ``max_rate`` times a second.
    """

    def update(self, obj: object) -> None:
        """Show ``obj`` in place of what the area showed."""


#: Makes a view's output area from the first thing it shows (a "waiting" placeholder), in the
#: thread that calls :func:`live`. The ``output`` argument of :func:`live` takes one of these.
OutputFactory = Callable[[object], OutputArea]


class _Text:
    """A message shown as plain text, without the quotes a ``str`` would get."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self._text)}</pre>"


class _Noted:
    """A rendering with a note below it (an error), for the text and HTML forms of the rendering."""

    def __init__(self, rendering: object, note: str) -> None:
        self._rendering = rendering
        self._note = note

    def __repr__(self) -> str:
        return f"{self._rendering!r}\n\n{self._note}"

    def _repr_mimebundle_(
        self, include: object = None, exclude: object = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        shell = _get_shell()
        formatter = getattr(shell, "display_formatter", None)
        data: dict[str, Any]
        metadata: dict[str, Any]
        if formatter is not None:
            data, metadata = formatter.format(self._rendering)
        else:
            data, metadata = {"text/plain": repr(self._rendering)}, {}
        data = dict(data)
        plain = str(data.get("text/plain", ""))
        data["text/plain"] = f"{plain}\n\n{self._note}" if plain else self._note
        note_html = f'<pre style="color: #b00">{html.escape(self._note)}</pre>'
        if "text/html" in data:
            data["text/html"] = f"{data['text/html']}{note_html}"
        elif not set(data) - {"text/plain"}:
            # Only text: an HTML form shows the note in colour. A rendering in another form (an
            # image) keeps it as is, as an added HTML form would hide it; the note is then in the
            # text form only.
            data["text/html"] = f"<pre>{html.escape(plain)}</pre>{note_html}"
        return data, metadata


_WAITING = _Text("waiting for the first event…")
_EMPTY = _Text("the source completed without an event")


def _error_note(what: str, error: BaseException) -> str:
    return f"{what}: {type(error).__name__}: {error}"


def _get_shell() -> Any:
    """The running IPython shell, or None (no IPython, or not started). A seam for the tests."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebook extra
        return None
    return get_ipython()


class _NoOutput:
    """The output area of a headless view: shows nothing."""

    def update(self, obj: object) -> None:
        pass


def _default_output(initial: object) -> OutputArea:
    """An IPython display handle in a kernel; nothing elsewhere (terminal IPython would print every
    refresh on a new line, under the prompt)."""
    shell = _get_shell()
    if shell is None or getattr(shell, "kernel", None) is None:
        return _NoOutput()
    from IPython.display import display

    handle = display(initial, display_id=True)  # type: ignore[no-untyped-call]
    if handle is None:  # pragma: no cover - display gives a handle whenever a shell runs
        return _NoOutput()
    area: OutputArea = handle
    return area


class _Cells:
    """The running views of one IPython shell by the id of the cell that created them.

    Its ``pre_run_cell`` hook stops the views of a cell when that cell is executed again, and
    remembers the id of the cell being executed (for views created outside the kernel's own request
    context, where the kernel cannot tell).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: dict[str, list[LiveView[Any]]] = {}
        self.current: str | None = None

    def pre_run_cell(self, info: object) -> None:
        # Called by IPython on the main thread before each cell; it must never raise (IPython would
        # print a traceback above the user's cell) nor block.
        cell_id = getattr(info, "cell_id", None)
        self.current = cell_id if isinstance(cell_id, str) and cell_id else None
        if self.current is None:
            return
        with self._lock:
            views = self._views.pop(self.current, [])
        for view in views:
            view.stop()

    def add(self, cell_id: str, view: LiveView[Any]) -> None:
        with self._lock:
            self._views.setdefault(cell_id, []).append(view)

    def discard(self, cell_id: str, view: LiveView[Any]) -> None:
        with self._lock:
            views = self._views.get(cell_id, [])
            if view in views:
                views.remove(view)
            if not views:
                self._views.pop(cell_id, None)


# One registry per shell, its hook registered once; weak so that a discarded shell (tests) goes.
_cells_by_shell: weakref.WeakKeyDictionary[Any, _Cells] = weakref.WeakKeyDictionary()
_cells_lock = threading.Lock()


def _cells_of(shell: Any) -> _Cells | None:
    events = getattr(shell, "events", None)
    if events is None:
        return None
    with _cells_lock:
        cells = _cells_by_shell.get(shell)
        if cells is None:
            cells = _Cells()
            events.register("pre_run_cell", cells.pre_run_cell)
            _cells_by_shell[shell] = cells
    return cells


def _current_cell_id(shell: Any, cells: _Cells) -> str | None:
    """The id of the cell being executed: from the kernel's current request (the ``cellId`` of its
    metadata, set by Jupyter front-ends), else the one the ``pre_run_cell`` hook saw last."""
    kernel = getattr(shell, "kernel", None)
    get_parent = getattr(kernel, "get_parent", None)
    if callable(get_parent):
        try:
            parent = get_parent()
            metadata = parent.get("metadata") if isinstance(parent, dict) else None
            cell_id = metadata.get("cellId") if isinstance(metadata, dict) else None
        except Exception:  # an ipykernel that keeps no request for this thread: use the hook's
            cell_id = None
        if isinstance(cell_id, str) and cell_id:
            return cell_id
    return cells.current


class LiveView(Generic[_T]):
    """A running live view (made by :func:`live`): its counters, its state, and :meth:`stop`.

    Every attribute may be read from any thread at any time.
    """

    def __init__(
        self,
        render: Callable[[_T], object],
        period: float,
        area: OutputArea,
        scheduler: abc.PeriodicSchedulerBase | None,
        context: contextvars.Context,
    ) -> None:
        self._render = render
        self._period = period
        self._area = area
        self._scheduler = scheduler
        self._context = context
        self._lock = threading.Lock()  # guards everything below it
        self._latest: _T | None = None
        self._has_item = False
        self._pending = False  # an item arrived since the last refresh
        self._received = 0
        self._refreshes = 0
        self._render_errors = 0
        self._error: BaseException | None = None
        self._source_error: BaseException | None = None
        self._finished = False  # the source completed or failed: one last refresh to go
        self._stopped = False
        self._ended = threading.Event()
        # Timer-thread state: touched by refreshes only, which never run concurrently.
        self._good: object = _WAITING  # the last rendering that succeeded
        self._shown_note: str | None = None
        self._subscription = SingleAssignmentDisposable()
        self._timer = SingleAssignmentDisposable()
        self._on_stop: list[Callable[[], None]] = []

    # --- the state -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True until the view stopped or ended (source done and its last refresh made)."""
        return not self._ended.is_set()

    @property
    def received(self) -> int:
        """How many items the source delivered."""
        return self._received

    @property
    def refreshes(self) -> int:
        """How many times the output area was updated (the first display not counted)."""
        return self._refreshes

    @property
    def render_errors(self) -> int:
        """How many times ``render`` raised."""
        return self._render_errors

    @property
    def error(self) -> BaseException | None:
        """The source's error, else the last exception ``render`` raised, else None."""
        with self._lock:
            return self._source_error if self._source_error is not None else self._error

    @property
    def display_id(self) -> str | None:
        """The IPython display id of the output area (None when headless or a custom area has none)."""
        display_id = getattr(self._area, "display_id", None)
        return display_id if isinstance(display_id, str) else None

    def stop(self) -> None:
        """Stop the view: unsubscribe from the source and stop the timer, with no further refresh.

        Idempotent, callable from any thread (the timer's included); returns at once. A refresh
        under way on the timer's thread finishes; none starts after this returns.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            callbacks, self._on_stop = self._on_stop, []
        self._subscription.dispose()
        self._timer.dispose()
        for callback in callbacks:
            callback()
        self._ended.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the view stops or ends, for at most ``timeout`` seconds (None: no limit).

        Returns whether it did. For scripts and tests: in a notebook it blocks the kernel.
        """
        return self._ended.wait(timeout)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LiveView {state}: {self._received} received, {self._refreshes} refreshes>"

    # --- the source's side: any thread, cheap ----------------------------------------------

    def _on_next(self, item: _T) -> None:
        with self._lock:
            self._latest = item
            self._has_item = True
            self._pending = True
            self._received += 1

    def _on_error(self, error: Exception) -> None:
        with self._lock:
            self._source_error = error
            self._finished = True

    def _on_completed(self) -> None:
        with self._lock:
            self._finished = True

    # --- the timer's side --------------------------------------------------------------------

    def _start(self, source: Observable[_T]) -> None:
        if self._scheduler is not None:
            self._timer.disposable = self._scheduler.schedule_periodic(self._period, self._tick)
        else:
            wake = threading.Event()
            self._timer.disposable = Disposable(wake.set)
            # The calling cell's context goes with the thread: ipykernel reads the request that
            # output belongs to from a context variable, else takes the request executing then.
            thread = threading.Thread(
                target=self._context.run, args=(self._run_timer, wake), name="rxinvest-live", daemon=True
            )
            thread.start()
        try:
            self._subscription.disposable = source.subscribe(
                self._on_next, self._on_error, self._on_completed
            )
        except BaseException:
            self.stop()
            raise

    def _is_stopped(self) -> bool:
        with self._lock:
            return self._stopped

    def _run_timer(self, wake: threading.Event) -> None:
        # The wait starts once the previous refresh has been sent: two refreshes are at least a
        # period apart, the time to render and send them on top (a fixed-rate timer would let a
        # slow refresh and a quick one come closer than a period).
        while not wake.wait(self._period):
            self._tick()

    def _tick(self, state: Any = None) -> Any:
        # Nothing may escape: an exception would end the timer's thread and freeze the view.
        try:
            self._refresh()
        except Exception:
            log.exception("live view: a refresh failed; the view goes on")
        return state

    def _refresh(self) -> None:
        with self._lock:
            if self._stopped:
                return
            pending, item, has_item = self._pending, self._latest, self._has_item
            self._pending = False
            finished, source_error = self._finished, self._source_error
        shown: object | None = None
        if pending:
            try:
                rendering = self._render(item)  # type: ignore[arg-type]  # pending implies an item
                # A string is text to show, not a value whose repr (in quotes) to show.
                self._good = _Text(rendering) if isinstance(rendering, str) else rendering
                shown = self._good
                self._shown_note = None
            except Exception as exc:
                with self._lock:
                    self._error = exc
                    self._render_errors += 1
                note = _error_note("render failed", exc)
                if note != self._shown_note:  # the same failure again: already on show
                    self._shown_note = note
                    shown = _Text(note) if self._good is _WAITING else _Noted(self._good, note)
        if finished:
            if source_error is not None:
                note = _error_note("the source failed", source_error)
                shown = _Noted(self._good, note) if has_item else _Text(note)
            elif not has_item:
                shown = _EMPTY
        if shown is not None:
            if self._is_stopped():  # stopped while rendering: show nothing more
                return
            self._area.update(shown)
            with self._lock:
                self._refreshes += 1
        if finished:
            self.stop()


def live(
    source: Observable[_T],
    *,
    render: Callable[[_T], object] | None = None,
    max_rate: float = 10.0,
    scheduler: abc.PeriodicSchedulerBase | None = None,
    output: OutputFactory | None = None,
) -> LiveView[_T]:
    """Show the latest item of ``source`` in one output area, refreshed at most ``max_rate`` times a
    second, until the view is stopped, its cell runs again, or the source ends.

    Returns at once: the kernel stays free for other cells. See the module's rules for threads,
    errors and the end of a view.

    Args:
        source: Any Observable; its events may arrive on any thread, at any rate.
        render: Makes what to show from the latest item: anything IPython can display (a DataFrame,
            a figure, an object with ``_repr_html_``, a string ...). Called on the view's timer
            thread, once per refresh; a string is shown as text (no quotes). Default: the item
            itself (a DataFrame shows as a table, anything else by its repr).
        max_rate: The most refreshes a second, a positive number (the period of the timer is
            ``1 / max_rate`` seconds).
        scheduler: A reactivex scheduler whose ``schedule_periodic`` runs the refreshes (it then
            sets the pace, and the thread and context they run in). Default: a daemon thread of
            the view's own, in the calling cell's context, pausing a period after each refresh.
        output: Makes the output area from the first thing shown (see :data:`OutputFactory`).
            Default: an IPython display handle in a kernel, nothing elsewhere.

    Raises:
        ConfigurationError: ``source`` is not an Observable, ``render`` or ``output`` not callable,
            ``max_rate`` not a positive finite number, or ``scheduler`` cannot run periodic work.
    """
    if not callable(getattr(source, "subscribe", None)):
        raise ConfigurationError(f"live() needs an Observable, not {type(source).__name__}")
    if render is not None and not callable(render):
        raise ConfigurationError(f"render must be callable, not {type(render).__name__}")
    if output is not None and not callable(output):
        raise ConfigurationError(f"output must be callable, not {type(output).__name__}")
    if (
        isinstance(max_rate, bool)
        or not isinstance(max_rate, int | float)
        or not math.isfinite(max_rate)
        or max_rate <= 0
    ):
        raise ConfigurationError(
            f"max_rate must be a positive number of refreshes a second, not {max_rate!r}"
        )
    if scheduler is not None and not callable(getattr(scheduler, "schedule_periodic", None)):
        raise ConfigurationError(f"scheduler must be a periodic reactivex scheduler, not {scheduler!r}")

    area = (output or _default_output)(_WAITING)
    view = LiveView(
        render if render is not None else _identity,
        1.0 / float(max_rate),
        area,
        scheduler,
        contextvars.copy_context(),
    )

    shell = _get_shell()
    cells = _cells_of(shell) if shell is not None else None
    if cells is not None:
        cell_id = _current_cell_id(shell, cells)
        if cell_id is not None:
            cells.add(cell_id, view)
            view._on_stop.append(lambda: cells.discard(cell_id, view))  # no stopped view is kept
    view._start(source)
    return view


def _identity(item: object) -> object:
    return item
