"""Models: the catalog of named models, loading, the post-load probe, and the per-process shelf.

The names below are the package's public surface; the submodules hold one job each.
"""
from sinkfix.models.catalog import (  # noqa: F401
    DEFAULT_MODEL,
    EMBEDDED,
    EmbeddedModel,
    embedded_names,
    embedded_ready,
    smollm2_converted_dir,
)
from sinkfix.models.loading import LoadedModel, fingerprint, load_model  # noqa: F401
from sinkfix.models.probe import model_inputs  # noqa: F401
from sinkfix.models.shelf import ModelShelf, get_model  # noqa: F401
