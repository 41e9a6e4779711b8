"""The run database: every analysis in SQLite, scalars in plain tables, tensors as safetensors blobs.

One module per table family, each a mixin over the shared connection (``database``):
``runs`` (+ ``run_rows`` for the SQL of one run, ``run_details`` for its per-token and per-head rows,
``codec`` for blobs, ``keys`` for cache keys), ``corpora``, ``evaluations`` (and calibrations),
``experiments``, ``sharing`` (owners share and unshare rows). ``schema`` is the append-only list of
migration steps. Every read takes a ``viewer`` (``sinkfix.policy.ownership.Viewer``): what they may
not read is missing.
"""
from sinkfix.store.corpora import CorporaTable
from sinkfix.store.evaluations import EvaluationsTable
from sinkfix.store.experiments import ExperimentsTable
from sinkfix.store.run_details import RunDetails
from sinkfix.store.runs import RunsTable
from sinkfix.store.sharing import SharingTable


class Store(RunsTable, RunDetails, CorporaTable, EvaluationsTable, ExperimentsTable, SharingTable):
    """A SinkFix database. Safe to share across threads: each thread gets its own connection."""


__all__ = ["Store"]
