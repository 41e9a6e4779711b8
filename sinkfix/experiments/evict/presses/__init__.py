"""The presses, one per module, by name: kvpress's semantics, SinkFix's statistics."""
from __future__ import annotations

from sinkfix.errors import SettingsError
from sinkfix.experiments.evict.presses.base import LayerStats, Press, n_kept
from sinkfix.experiments.evict.presses.h2o import H2O
from sinkfix.experiments.evict.presses.knorm import KNorm
from sinkfix.experiments.evict.presses.pyramidkv import PyramidKV
from sinkfix.experiments.evict.presses.random_press import Random
from sinkfix.experiments.evict.presses.snapkv import SnapKV
from sinkfix.experiments.evict.presses.streaming import Streaming
from sinkfix.experiments.evict.presses.tova import TOVA

PRESSES: dict[str, type[Press]] = {cls.name: cls for cls in (Streaming, H2O, TOVA, SnapKV, PyramidKV, KNorm, Random)}

__all__ = ["PRESSES", "LayerStats", "Press", "make", "n_kept"]


def make(press: str | Press) -> Press:
    """A press from its name (``h2o``, ``snapkv``, ...), or the press itself."""
    if isinstance(press, Press):
        return press
    if press not in PRESSES:
        raise SettingsError(f"unknown press {press!r}: choose from {', '.join(PRESSES)}")
    return PRESSES[press]()
