"""``connect()``: the one call that gives a :class:`~rxinvest.streams.Client`, against the embedded
simulator, production, the sandbox or any base URL."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs
from reactivex import abc

from rxinvest.errors import ConfigurationError
from rxinvest.protocol.pacing import Limits
from rxinvest.streams import DEFAULT_PING_DELAY, Client
from rxinvest.wire import resolve_base_url, rest_base_url

__all__ = ["connect"]


def connect(
    token: str | None = None,
    *,
    target: str | None = None,
    dialect: str = "json",
    app_name: str | None = "rxinvest",
    ping_delay: float | None = DEFAULT_PING_DELAY,
    scheduler: abc.SchedulerBase | None = None,
    open_timeout: float = 10.0,
    sim_options: Mapping[str, Any] | None = None,
    limits: Limits = Limits(),  # noqa: B008 (frozen: one shared default is safe)
    rest_url: str | None = None,
    record: str | os.PathLike[str] | None = None,
    replay: str | os.PathLike[str] | None = None,
    speed: float | None = None,
) -> Client:
    """Connect to the T-Invest streams; returns a :class:`~rxinvest.streams.Client` (a context manager).

    * ``token``: the API token, else the ``INVEST_TOKEN`` environment variable. It is sent only in
      the ``Authorization`` header and never logged, printed or put in an error. With
      ``target="sim"`` the embedded simulator's own token is used instead.
    * ``target``: ``"sim"`` (an embedded simulator for the client's lifetime: the default when there
      is no token), ``"prod"`` (the default with a token), ``"sandbox"``, or a ``ws://``/``wss://``
      base URL such as a running simulator's ``sim.base_url``.
    * ``dialect``: ``"json"`` (camelCase) or ``"json-proto"`` (proto field names).
    * ``app_name``: sent as ``x-app-name`` (the API asks SDKs for ``<github-nick>.<repo>``).
    * ``ping_delay``: seconds between server pings to ask for on every stream (default 15; None:
      the server's 120). A stream silent for twice that is reconnected, so a stall is noticed
      within about 30 s.
    * ``scheduler``: where ``on_next`` runs (see :mod:`rxinvest.streams.client`).
    * ``open_timeout``: seconds to keep trying before giving up on a target that never answered:
      subscribers then get :class:`~rxinvest.errors.ConnectionFailedError` with the cause. Once a
      connection has opened, a lost one is retried for as long as it is wanted.
    * ``sim_options``: options of the embedded simulator (``seed``, ``scenario``, ``speed`` ...).
    * ``rest_url``: the unary REST API that fills the gaps of account streams after a reconnect
      (``https://…/rest/``). Default: the embedded simulator's, or prod's or the sandbox's for
      those targets; none for a ``ws://``/``wss://`` base (gaps are then only marked): pass it,
      e.g. a running simulator's ``sim.rest_url`` (it serves REST on a port of its own), or
      ``rxinvest.wire.rest_base_url(base)`` for a proxy that serves both.
    * ``limits``: the API limits to keep to (:class:`~rxinvest.Limits`): subscription requests a
      minute (90), MarketDataStream connections (15) and subscriptions per connection (300).
    * ``record``: a file to record every stream of the client to (see :mod:`rxinvest.replay`):
      the frames both ways with their times, and connection and gap marks, as compressed JSON
      lines (zstd; gzip for a name ending in ``.gz``), never the token. It is flushed at least
      every second and closed by ``client.close()``, which then waits while the recorder reads the
      file back for its digest (about 15 µs a frame); ``client.recorder`` is the
      :class:`~rxinvest.replay.Recorder` (counts of frames, bytes, losses).
    * ``replay``: a recording to play back instead of connecting anywhere (see
      :mod:`rxinvest.replay.play`): the client's sources give what the recorded client's gave,
      through the same codec and sessions, under virtual time. Subscribe, then call
      ``client.replay.run()``; pass ``scheduler=client.scheduler`` (the virtual clock) to time-based
      operators. ``speed``: None (as fast as possible) or a factor of the recorded pace. The token,
      ``target``, ``dialect`` (the recording's), ``scheduler``, ``sim_options``, ``record``,
      ``open_timeout`` and ``rest_url`` do not apply (those that would change it are refused).

    Raises :class:`~rxinvest.errors.ConfigurationError` for a bad target or dialect, a real target
    without a token, or a simulator option it does not take or whose value is bad. Nothing connects
    until a source is subscribed.
    """
    if replay is not None:
        return _replay(replay, speed, target, scheduler, sim_options, record, app_name, ping_delay, limits)
    if speed is not None:
        raise ConfigurationError("speed applies to replay= only")
    token = token or os.environ.get("INVEST_TOKEN") or None
    if target is None:
        target = "prod" if token else "sim"
    hooks = []
    if target == "sim":
        import inspect

        from rxinvest.sim import Simulator

        options = dict(sim_options or {})
        unknown = sorted(set(options) - set(inspect.signature(Simulator).parameters))
        if unknown:
            valid = ", ".join(inspect.signature(Simulator).parameters)
            raise ConfigurationError(f"unknown sim_options {unknown}; the simulator takes: {valid}")
        sim = Simulator(**options).start()
        base_url, token = sim.base_url, sim.token
        rest_url = sim.rest_url
        hooks.append(sim.stop)
    else:
        if sim_options:
            raise ConfigurationError("sim_options apply to target='sim' only")
        base_url = resolve_base_url(target)
        if target in ("prod", "sandbox"):
            rest_url = rest_url or rest_base_url(base_url)
        if not token:
            raise ConfigurationError(f"target {target!r} needs a token: pass token= or set INVEST_TOKEN")
    recorder = None
    if record is not None:
        from rxinvest import __version__
        from rxinvest.replay import Recorder

        try:
            recorder = Recorder(record, dialect=dialect, secrets=[token], version=__version__).start()
        except BaseException:
            for hook in hooks:  # the embedded simulator
                hook()
            raise
        hooks.insert(0, recorder.close)  # after the streams closed: their last marks are in
    try:
        client = Client(
            base_url=base_url,
            token=token,
            dialect=dialect,
            app_name=app_name,
            ping_delay=ping_delay,
            scheduler=scheduler,
            open_timeout=open_timeout,
            on_close=hooks,
            limits=limits,
            rest_url=rest_url,
            tap=recorder,
        )
    except BaseException:
        if recorder is not None:
            recorder.close()
        raise
    client.recorder = recorder
    if target == "sim":
        client.sim = sim
    return client


def _replay(
    path: str | os.PathLike[str],
    speed: float | None,
    target: str | None,
    scheduler: abc.SchedulerBase | None,
    sim_options: Mapping[str, Any] | None,
    record: str | os.PathLike[str] | None,
    app_name: str | None,
    ping_delay: float | None,
    limits: Limits,
) -> Client:
    """A client playing ``path`` (see :func:`connect`'s ``replay``)."""
    from rxinvest.replay import Player

    given = [
        name
        for name, value in (
            ("target", target),
            ("scheduler", scheduler),
            ("sim_options", sim_options),
            ("record", record),
        )
        if value is not None
    ]
    if given:
        raise ConfigurationError(f"replay= takes none of {', '.join(given)}: the recording decides")
    player = Player(path, speed=speed)
    client = Client(
        base_url=f"replay:{player.path}/",
        token="replay",  # noqa: S106 (never sent anywhere: nothing connects)
        dialect=player.dialect,
        app_name=app_name,
        ping_delay=ping_delay,
        scheduler=player.scheduler,
        transport_factory=player,
        on_close=[player.drain],
        # Unpaced, with no linger: requests leave when the recorded client's did (at each connect).
        limits=attrs.evolve(limits, requests=None, linger=0),
    )
    client.replay = player
    return client
