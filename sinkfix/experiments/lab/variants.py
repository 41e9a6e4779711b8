"""The attention variants the lab trains, what each changes in the model, and what the papers claim.

Every variant is the same small decoder (``architecture``) with one change:
- ``softmax``: plain softmax attention, the control;
- ``softmax1``: softmax with +1 in the denominator (off-by-one; a sink logit fixed at 0);
- ``sigmoid``: σ(q·k/√d) per key, no normalisation (Gu et al. 2025);
- ``relu``: max(q·k/√d, 0), no normalisation (Guo et al. 2024);
- ``softpick``: ReLU(eˢ − 1) / Σ|eˢ − 1| (Zuhri et al. 2025);
- ``gated``: softmax, then each head's output times σ(x·w_h), a head-wise gate computed from the
  layer's input (Qiu et al. 2025's head-wise variant);
- ``sinklogit``: softmax over the keys plus one learned logit per head (gpt-oss's ``sinks``);
- ``registers``: softmax, with k learned tokens prepended to every sequence (Darcet et al. 2024).
"""
from __future__ import annotations

from dataclasses import dataclass

from sinkfix.errors import SettingsError


@dataclass(frozen=True)
class Variant:
    name: str
    normaliser: str = "softmax"
    gate: bool = False
    sink_logit: str | None = None  # "learned" (sinklogit) or "zero" (softmax1)
    registers: bool = False
    claim: str = ""  # the published direction this variant tests
    source: str = ""


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("softmax", claim="the first token becomes a sink: the highest Sink₁ of all variants",
            source="Gu et al. 2025 (arXiv 2410.10781); Guo et al. 2024 (arXiv 2410.13835)"),
    Variant("softmax1", sink_logit="zero",
            claim="a fixed +1 lets a head attend to nothing, so less mass needs a sink token",
            source="Miller 2023 (off-by-one); Gu et al. 2025 §7"),
    Variant("sigmoid", normaliser="sigmoid", claim="no sink without normalisation: Sink₁ near 0",
            source="Gu et al. 2025 (arXiv 2410.10781) §7"),
    Variant("relu", normaliser="relu", claim="ReLU attention removes the sink, value drain and residual peak",
            source="Guo et al. 2024 (arXiv 2410.13835) §3"),
    Variant("softpick", normaliser="softpick", claim="sink rate 0% and far lower activation kurtosis",
            source="Zuhri et al. 2025 (arXiv 2504.20966)"),
    Variant("gated", gate=True, claim="a head-wise output gate removes most first-token attention and massive "
            "activations: lower first-token mass than softmax", source="Qiu et al. 2025 (arXiv 2505.06708)"),
    Variant("sinklogit", sink_logit="learned",
            claim="the learned sink takes the mass and the first token's share drops",
            source="gpt-oss (2025); Gu et al. 2025 §7 (learnable sink)"),
    Variant("registers", registers=True, claim="the extra learned tokens absorb the sink and the outliers",
            source="Darcet et al. 2024 (ICLR)"),
)}


def parse_variants(raw: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``softmax,relu`` (or a list) -> a tuple of known variant names, in order, without repeats."""
    names = [n.strip() for n in (raw.split(",") if isinstance(raw, str) else raw) if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise SettingsError(f"attention variants must be among {', '.join(VARIANTS)}, got {', '.join(names) or 'none'}")
    return tuple(dict.fromkeys(names))
