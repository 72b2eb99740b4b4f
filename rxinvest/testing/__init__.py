"""Helpers for testing code built on rxinvest: hypothesis strategies for the model's events,
marble-test helpers for operators, and stand-in transports, so that users test their own pipelines
the way rxinvest tests its own.

It sits above every other layer but the command line: it may use the simulator, the transports and
the client. Optional dependencies (hypothesis) are imported by the modules that need them, never by
this package, so ``import rxinvest.testing`` costs nothing.
"""

__all__: list[str] = []
