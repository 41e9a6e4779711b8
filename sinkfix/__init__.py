"""SinkFix: find, classify and correct attention sinks in transformers."""

__version__ = "0.1.0"

from .analysis import Analysis, analyze  # noqa: E402
from .errors import (  # noqa: E402
    InputError,
    ModelNotFoundError,
    RunNotFoundError,
    SettingsError,
    SinkFixError,
    StoreError,
    UnsupportedModelError,
)
from .models import EMBEDDED, LoadedModel, get_model, load_model  # noqa: E402
from .settings import AnalysisSettings  # noqa: E402
from .store import Store  # noqa: E402
from .cache import analyze_cached  # noqa: E402

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
    "analyze_cached",
    "get_model",
    "load_model",
]
