"""Exploring markets in Jupyter (the extra ``notebook``: ``pip install rxinvest[notebook]``).

* :func:`to_dataframe` / :func:`from_dataframe`: events of any type as a pandas DataFrame, one row
  each, and back (:mod:`rxinvest.notebook.frames`).
"""

from rxinvest.notebook.frames import book_levels, from_dataframe, to_dataframe

__all__ = ["book_levels", "from_dataframe", "to_dataframe"]
