"""The run database: every analysis in SQLite, scalars in plain tables, tensors as safetensors blobs.

One module per table family, each a mixin over the shared connection (``database``):
``runs`` (+ ``codec`` for blobs, ``keys`` for cache keys), ``corpora``, ``evaluations`` (and
calibrations), ``experiments``. ``schema`` is the append-only list of migration steps.
"""
from sinkfix.store.corpora import CorporaTable
from sinkfix.store.evaluations import EvaluationsTable
from sinkfix.store.experiments import ExperimentsTable
from sinkfix.store.runs import RunsTable


class Store(RunsTable, CorporaTable, EvaluationsTable, ExperimentsTable):
    """A SinkFix database. Safe to share across threads: each thread gets its own connection."""


__all__ = ["Store"]
