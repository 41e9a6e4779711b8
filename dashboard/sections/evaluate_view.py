"""Evaluate page: an evaluation to show (``View``) and what is read from its stored JSON alone: the
intervention, the redistributed tokens' names, and why a per-position view cannot be drawn."""
from __future__ import annotations

from dataclasses import dataclass, field

from sinkfix.analysis.display import show_token
from sinkfix.errors import SinkFixError
from sinkfix.experiments.intervene import Intervention
from sinkfix.plots import evaluation_result


@dataclass
class View:
    """An evaluation to show: its stored JSON, and (fresh results only) the forwards behind it."""

    id: int
    kind: str  # "evaluate" or "sts"
    result: dict
    intervention: Intervention | None = None
    runs: list | None = None
    scores: list | None = None
    predictions: dict = field(default_factory=dict)

    @property
    def model(self) -> str:
        return str(self.result.get("model", ""))

    @property
    def lm_kind(self) -> str | None:
        """"causal", "masked", or None without an LM head (read from the JSON, older results too)."""
        return evaluation_result.lm_kind(self.result)

    def label(self) -> str:
        return greek(self.intervention.label()) if self.intervention is not None else intervention_label(self.result)


def intervention_of(result: dict) -> Intervention | None:
    try:
        heads = result.get("heads")
        layers = result.get("layers")
        return Intervention(target=result.get("target") or "first", beta=float(result.get("beta") or 0.0),
                            layers=None if layers is None else tuple(layers),
                            heads=None if heads is None else tuple(tuple(h) for h in heads))
    except (SinkFixError, TypeError, ValueError):
        return None


def greek(label: str) -> str:
    """The core's plain-ASCII label ("first, beta=0.4, all heads") as the pages write it (β=0.4)."""
    return label.replace("beta=", "β=")


def intervention_label(result: dict) -> str:
    found = intervention_of(result)
    return greek(found.label()) if found is not None else f"{result.get('target')}, β={result.get('beta')}"


def stored_view(row: dict) -> View:
    """A view of a row from ``Store.evaluations()`` / ``Store.evaluation()``."""
    return View(id=int(row["id"]), kind=row["kind"], result=row["result"], intervention=intervention_of(row["result"]))


def target_names(e: dict) -> list[str]:
    """The redistributed tokens as shown (position and text), from the stored JSON: ``target_token_text``
    (every evaluation stores it, the CLI's too) or, failing that, the chunk's ``tokens``."""
    texts = e.get("target_token_text") or []
    tokens = e.get("tokens") or []
    names = []
    for c, chunk in enumerate(e.get("target_tokens") or []):
        for k, i in enumerate(chunk):
            text = texts[c][k] if c < len(texts) and k < len(texts[c]) else (
                tokens[c][i] if c < len(tokens) and i < len(tokens[c]) else None)
            if text is not None:
                names.append(f"{i} {show_token(text, 16)}" + (f" (chunk {c + 1})" if len(e["target_tokens"]) > 1 else ""))
    return list(dict.fromkeys(names))


def kl_missing_reason(view: "View", n_kl: int, n_tokens: int) -> str:
    """Why the per-position KL of a stored evaluation cannot be drawn, in one sentence."""
    e = view.result
    if "per_position_kl" not in e or "tokens" not in e:
        source = "the CLI (`python -m sinkfix evaluate`)" if e.get("source") != "dashboard" else "an older SinkFix"
        return (f"This evaluation was stored by {source}, which keeps the means but not the per-position KL or "
                "the chunk's tokens. Run it on this page (or with `--json`) to see KL token by token; the summary, "
                "β sweep and per-sink evidence here are complete.")
    return (f"This evaluation stores {n_kl} per-position KL values for a chunk of {n_tokens} tokens, which does "
            f"not match what a {view.lm_kind or 'model without an LM head'} scores, so they cannot be placed on "
            "its tokens.")
