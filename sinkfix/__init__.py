"""SinkFix: find, classify and correct attention sinks in transformers."""

from sinkfix.version import __version__  # noqa: E402

from sinkfix.analysis.pipeline import analyze, analyze_many  # noqa: E402
from sinkfix.analysis.result import Analysis  # noqa: E402
from sinkfix.errors import (  # noqa: E402
    InputError,
    ModelNotFoundError,
    RunNotFoundError,
    SettingsError,
    SinkFixError,
    StoreError,
    UnsupportedModelError,
)
from sinkfix.models import EMBEDDED, LoadedModel, get_model, load_model  # noqa: E402
from sinkfix.settings import AnalysisSettings  # noqa: E402
from sinkfix.store import Store  # noqa: E402
from sinkfix.cache import analyze_cached  # noqa: E402

__all__ = [
    "Analysis",
    "AnalysisSettings",
    "EMBEDDED",
    "InputError",
    "LoadedModel",
    "ModelNotFoundError",
    "RunNotFoundError",
    "SettingsError",
    "SinkFixError",
    "Store",
    "StoreError",
    "UnsupportedModelError",
    "__version__",
    "analyze",
    "analyze_many",
    "analyze_cached",
    "get_model",
    "load_model",
]
