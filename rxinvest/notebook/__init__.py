"""Exploring markets in Jupyter (the extra ``notebook``: ``pip install rxinvest[notebook]``).

* :func:`to_dataframe` / :func:`from_dataframe`: events of any type as a pandas DataFrame, one row
  each, and back; :func:`book_levels` (:mod:`rxinvest.notebook.frames`).
* :func:`candlesticks`, :func:`depth_chart`, :func:`positions_chart`: matplotlib figures that show
  inline (:mod:`rxinvest.notebook.charts`).
* :func:`live`: one output area updated in place from an Observable, at most ``max_rate`` times a
  second, on a timer thread of its own; the kernel stays free (:mod:`rxinvest.notebook.views`).
"""

from rxinvest.notebook.charts import candlesticks, depth_chart, positions_chart
from rxinvest.notebook.frames import book_levels, from_dataframe, to_dataframe
from rxinvest.notebook.views import LiveView, OutputArea, live

__all__ = [
    "LiveView",
    "OutputArea",
    "book_levels",
    "candlesticks",
    "depth_chart",
    "from_dataframe",
    "live",
    "positions_chart",
    "to_dataframe",
]
