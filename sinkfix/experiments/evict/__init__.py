"""KV-cache eviction with kvpress's semantics, sink protection, and generated long-context tasks.

``presses/`` (one scorer per module, each with its dense reference), ``protect`` (none, first:N,
detected), ``capture`` (the one dense prefill per context and its statistics), ``compress`` (scores to
kept keys to a pruned cache), ``decode`` (the question and answer on a pruned cache), ``tasks/``,
``sweep`` (the runner), ``summary`` (intervals and the JSON), ``view`` (one prompt's kept keys, packed).

From Python, ``kept(model, context, press, ratio, protect)`` says which context positions each
(layer, KV head) keeps: ``{layer: [[sorted positions of KV head 0], ...]}``.
"""
from __future__ import annotations

from collections.abc import Sequence

from sinkfix.errors import InputError
from sinkfix.experiments.evict.capture import Prefill, prefill
from sinkfix.experiments.evict import compress as _compress
from sinkfix.experiments.evict.compress import Kept
from sinkfix.experiments.evict.presses import PRESSES, Press
from sinkfix.experiments.evict.protect import Protection
from sinkfix.experiments.evict.sweep import EvictResult, SweepSettings, run_sweep
from sinkfix.models import LoadedModel

# ``compress`` stays the module (``compress.compress`` is the function), so it is not re-exported here.
__all__ = ["PRESSES", "EvictResult", "Kept", "Prefill", "Press", "Protection", "SweepSettings", "kept", "prefill",
           "run_sweep"]


def kept(model: LoadedModel | str, context: str | Sequence[int], press: str | Press, ratio: float,
         protect: str | Protection = "none", kernel: str = "auto") -> dict[int, list[list[int]]]:
    """The context positions each (layer, KV head) keeps after ``press`` removes a fraction ``ratio``.

    ``context`` is a string (tokenised as the model's tokenizer does, its own special tokens included)
    or a list of token ids. The press sees only the context, as in kvpress.
    """
    if isinstance(model, str):
        from sinkfix.models import get_model

        model = get_model(model)
    if isinstance(context, str):
        ids = list(model.tokenizer(context)["input_ids"])
    else:
        ids = [int(i) for i in context]
    if not ids:
        raise InputError("the context is empty")
    return _compress.compress(prefill(model, ids, kernel), press, ratio, protect).positions()
