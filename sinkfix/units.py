"""One units convention for every page and notebook: perplexity is a plain number, NLL changes are in nats (signed),
ratios carry ×, rates and shares are %, and timestamps read "YYYY-MM-DD HH:MM UTC". Pure functions,
so tables and captions format the same way and tests check them without Streamlit.
"""
from __future__ import annotations

import math
from datetime import datetime

MISSING = "—"

GLOSSARY = {
    "perplexity (ppl)": "exp(mean next-token NLL); lower is better. A plain number, e.g. 23.41.",
    "NLL, ΔNLL": "negative log-likelihood per token, in nats; ΔNLL = intervened − baseline, so below 0 helps.",
    "ratio (×)": "how many times larger, e.g. a massive activation 3,400× the median |h|.",
    "rate, share (%)": "a fraction of heads, inputs or attention, shown in percent, e.g. Sink₁ 45.0 %.",
    "att_received": "the share of all attention a token receives (sums to 1 over tokens); shown as a decimal.",
    "95% CI": "bootstrap interval; with fewer than 10 resampled units it is flagged as rough.",
}


def _bad(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float | None, spec: str = ".4f") -> str:
    """A plain number in a table cell, "—" (never "None" or "nan") when it does not exist."""
    return MISSING if _bad(value) else format(value, spec)


def ppl(value: float | None) -> str:
    return MISSING if _bad(value) else f"{value:,.2f}"


def nats(value: float | None, signed: bool = True) -> str:
    return MISSING if _bad(value) else f"{value:+.4f} nats" if signed else f"{value:.4f} nats"


def ratio(value: float | None) -> str:
    return MISSING if _bad(value) else f"{value:,.0f}×"


def percent(fraction: float | None, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage."""
    return MISSING if _bad(fraction) else f"{100 * fraction:.{digits}f} %"


def interval(low: float | None, high: float | None, spec: str = "+.4f") -> str:
    return MISSING if _bad(low) or _bad(high) else f"[{low:{spec}}, {high:{spec}}]"


def plural(count: int, noun: str, many: str | None = None) -> str:
    """"1 chunk", "2 chunks"."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def when(stamp: object) -> str:
    """An ISO timestamp as "2025-01-01 12:00 UTC"; anything unreadable as it is, None as —."""
    if stamp is None or stamp == "":
        return MISSING
    try:
        moment = datetime.fromisoformat(str(stamp))
    except ValueError:
        return str(stamp)
    return moment.strftime("%Y-%m-%d %H:%M") + " UTC"


# The one number a stored experiment lists ("headline"), with its unit, by kind.
HEADLINES = {
    "streaming": ("best ppl", ppl),
    "kvquant": ("largest ΔNLL", nats),
    "sinkrate": ("Sink₁", percent),
    "massive": ("top |h| ratio", ratio),
    "lab": ("first-token mass", lambda v: number(v, ".3f")),  # the first variant's, mean over seeds
    "profile": ("top token-0 ÷ median norm", ratio),
    "lengths": ("Sink₁ at the longest T", percent),
    "bos": ("ΔNLL, BOS masked", nats),
    "secondary": ("sinks per window", lambda v: number(v, ".2f")),
    "evict": ("dense accuracy", percent),
}


def headline(kind: str, value: float | None) -> str:
    """``Store.experiments`` rows' headline, e.g. "best ppl 23.41", "Sink₁ 45.0 %"."""
    name, fmt = HEADLINES.get(kind, ("", lambda v: MISSING if _bad(v) else f"{v:g}"))
    shown = fmt(value)
    return shown if shown == MISSING or not name else f"{name} {shown}"
