"""The run database: every analysis in SQLite, scalars in plain tables, tensors as safetensors blobs.

One module per table family, each a mixin over the shared connection (``database``):
``runs`` (+ ``run_rows`` for the SQL of one run, ``run_details`` for its per-token and per-head rows,
``codec`` for blobs, ``keys`` for cache keys), ``corpora``, ``evaluations`` (and calibrations),
``experiments``, ``sharing`` (owners share and unshare rows). ``schema`` is the append-only list of
migration steps. Every read and write has a ``viewer`` (``sinkfix.policy.ownership.Viewer``): what
they may not read is missing. It is the call's ``viewer=``, else the store's own (``local`` by default:
a script, a notebook or the CLI on this machine); servers open their stores with ``viewer=None``, so
each call there names its visitor.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from sinkfix.store.corpora import CorporaTable
from sinkfix.store.evaluations import EvaluationsTable
from sinkfix.store.experiments import ExperimentsTable
from sinkfix.store.run_details import RunDetails
from sinkfix.store.runs import RunsTable
from sinkfix.store.sharing import SharingTable

if TYPE_CHECKING:
    import pandas

    from sinkfix.policy.ownership import Viewer


class Store(RunsTable, RunDetails, CorporaTable, EvaluationsTable, ExperimentsTable, SharingTable):
    """A SinkFix database. Safe to share across threads: each thread gets its own connection."""

    def frame(self, *, viewer: Viewer | None = None, **filters: object) -> pandas.DataFrame:
        """Stored runs as a pandas DataFrame: the rows ``list`` gives (and ``sinkfix runs list`` prints)
        for the same filters (``model``, ``text_contains``, ``since``, ``label``, ``limit``, ``offset``,
        ``order``), newest first; columns in ``sinkfix.notebook.frames``. Needs the viz extra (pandas)."""
        from sinkfix.notebook.frames import runs_frame

        return runs_frame(self.list(viewer=viewer, **filters))


__all__ = ["Store"]
