"""Helpers for testing code built on rxinvest: hypothesis strategies for the model's events,
marble-test helpers for operators, and stand-in transports, so that users test their own pipelines
the way rxinvest tests its own.

* :mod:`rxinvest.testing.strategies`: hypothesis strategies for every event type, order books on a
  tick grid, trade tapes with bursts and late prints, order scripts for reconciliation. Needs
  hypothesis: ``pip install 'rxinvest[testing]'``.
* :mod:`rxinvest.testing.marbles`: ``run_marbles`` and timelines of rxinvest's events on reactivex's
  ``TestScheduler``, one virtual clock for exchange time and the scheduler. Needs nothing extra.

It sits above every other layer but the command line: it may use the simulator, the transports and
the client. Optional dependencies (hypothesis) are imported by the modules that need them, never by
this package, so ``import rxinvest.testing`` costs nothing.
"""

__all__: list[str] = []
