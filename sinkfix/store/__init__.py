"""The run database: every analysis in SQLite, scalars in plain tables, tensors as safetensors blobs.

One module per table family, each a mixin over the shared connection (``database``):
``runs`` (+ ``codec`` for blobs, ``keys`` for cache keys), ``corpora``, ``evaluations`` (and
calibrations), ``experiments``. ``schema`` is the append-only list of migration steps.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from sinkfix.store.corpora import CorporaTable
from sinkfix.store.evaluations import EvaluationsTable
from sinkfix.store.experiments import ExperimentsTable
from sinkfix.store.runs import RunsTable

if TYPE_CHECKING:
    import pandas


class Store(RunsTable, CorporaTable, EvaluationsTable, ExperimentsTable):
    """A SinkFix database. Safe to share across threads: each thread gets its own connection."""

    def frame(self, **filters: object) -> pandas.DataFrame:
        """Stored runs as a pandas DataFrame: the rows ``list`` gives (and ``sinkfix runs list`` prints)
        for the same filters (``model``, ``text_contains``, ``since``, ``label``, ``limit``, ``offset``,
        ``order``), newest first; columns in ``sinkfix.notebook.frames``. Needs the viz extra (pandas)."""
        from sinkfix.notebook.frames import runs_frame

        return runs_frame(self.list(**filters))


__all__ = ["Store"]
