"""One evaluation's charts as the Evaluate page draws them, from its JSON alone (a fresh result's
``to_json(detail=True)`` or a stored one's ``result``): the β sweep, KL along the text, per-sink
evidence, and the forest plot of its change beside the controls.

The page and a notebook (``Store.evaluation(id).plot``) both call these with the same arguments.
"""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from sinkfix.analysis.display import is_special, show_tokens

from . import evaluation as charts
from .findings import findings_frame, forest_plot

KL_TITLE = "KL(p_orig ‖ p_mod) at each position"


def lm_kind(result: dict) -> str | None:
    """"causal", "masked", or None for a model without an LM head. Stored since the dashboard saves it;
    for older results: no NLL means no LM head, and a causal LM scores every position but the last."""
    if "lm_kind" in result:
        return result["lm_kind"]
    if result.get("baseline_nll") is None:
        return None
    tokens, kl = result.get("tokens") or [[]], result.get("per_position_kl") or [[]]
    return "causal" if len(kl[0]) == len(tokens[0]) - 1 else "masked"


def stored_positions(tokens: Sequence[str], kind: str | None, n_scores: int) -> list[int] | None:
    """The positions a stored per-position score belongs to (causal: all but the last; masked: the
    non-special tokens), or None when that does not match the number of stored scores."""
    found = list(range(len(tokens) - 1)) if kind == "causal" else [i for i, t in enumerate(tokens) if not is_special(t)]
    return found if len(found) == n_scores else None


def sweep(result: dict) -> alt.TopLevelMixin | None:
    """NLL and KL against β beside the controls (cosine alone without an LM head); None without a sweep."""
    points = result.get("sweep") or []
    if not points:
        return None
    return charts.sweep_chart(charts.sweep_frame(points), lm_kind(result) is not None)


def kl(tokens: Sequence[str], positions: Sequence[int], values: Sequence[float], targets: Sequence[int] = (),
       picked: int | None = None) -> alt.LayerChart:
    """KL at each scored position of one chunk (``tokens``: the chunk's raw tokens), targets in red."""
    return charts.position_chart(show_tokens(tokens), positions, values, "KL", KL_TITLE, targets, picked)


def largest(positions: Sequence[int], values: Sequence[float]) -> int:
    """The position with the largest value (the page's default pick; the first of equals)."""
    return positions[max(range(len(values)), key=lambda i: (values[i], -i))]


def stored_kl(result: dict, chunk: int = 0, picked: int | None = None) -> alt.LayerChart | None:
    """The KL chart of one stored chunk, ``picked`` outlined (default: the largest KL, as the page picks),
    or None when the evaluation keeps no per-position KL for it (stored by the CLI without ``--json``,
    or counts that do not match the chunk's tokens)."""
    tokens = (result.get("tokens") or [])
    values = (result.get("per_position_kl") or [])
    if chunk >= min(len(tokens), len(values)):
        return None
    positions = stored_positions(tokens[chunk], lm_kind(result), len(values[chunk]))
    if not positions:
        return None
    targets = (result.get("target_tokens") or [[]] * (chunk + 1))[chunk]
    return kl(tokens[chunk], positions, values[chunk], targets,
              largest(positions, values[chunk]) if picked is None else picked)


def evidence_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """``token_evidence`` rows with their tokens as charts and tables show them."""
    frame = pd.DataFrame(list(rows))
    frame["token"] = show_tokens(frame["token"])
    return frame


def evidence(result: dict) -> alt.LayerChart | None:
    """Each candidate sink redistributed alone: ΔNLL (or the cosine drop); None when none was measured."""
    rows = result.get("token_evidence") or []
    return charts.evidence_chart(evidence_frame(rows), lm_kind(result) is not None) if rows else None


def forest(row: dict) -> alt.TopLevelMixin | None:
    """The change with its 95% CI beside the controls (``row``: id, kind, model and result, as
    ``Store.evaluation`` returns it); None when there is nothing to draw (no LM head, no STS change)."""
    frame = findings_frame([row], [])
    return forest_plot(frame) if len(frame) else None
