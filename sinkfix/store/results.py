"""``StoredResult``: a stored evaluation or experiment row that shows itself in a notebook.

It is the plain dict ``Store.evaluation()`` and ``Store.experiment()`` always returned (``row["result"]``,
``row["kind"]``, JSON-ready, equal to the same dict), with two additions: ``_repr_html_`` (a compact
summary) and ``.plot`` (the dashboard's charts of that kind). Both live in ``sinkfix.notebook.stored``,
imported only when used, so the store needs neither altair nor pandas.
"""
from __future__ import annotations


class StoredResult(dict):
    """One stored evaluation or experiment (a dict: id, created_at, kind, model, ..., result)."""

    @property
    def plot(self) -> object:
        """The dashboard's charts of this result, e.g. ``.plot.forest()`` for an evaluation or
        ``.plot.curves()`` for a lab sweep (needs ``pip install "sinkfix[viz]"``)."""
        from sinkfix.notebook.stored import plots_of

        return plots_of(self)

    def _repr_html_(self) -> str:
        from sinkfix.notebook.stored import html_of

        return html_of(self)
