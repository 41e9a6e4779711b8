"""Sink classification rules. A rule is a small strategy object so others can sit beside the seed's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

BENEFICIAL = "beneficial"
DETRIMENTAL = "detrimental"
NEUTRAL = "neutral"
LABELS = (BENEFICIAL, DETRIMENTAL, NEUTRAL)


class Rule(Protocol):
    name: str

    def labels(self, att_received: np.ndarray, value_norm: np.ndarray) -> list[str]: ...


@dataclass(frozen=True)
class SeedRule:
    """The seed prototype's rule, kept as the default. It is a hypothesis, not a finding:
    the literature reads "high attention, low value norm" as a no-op sink that may be harmless,
    and ``sinkfix.evaluate`` is how a user tests it token by token.

    1. token 0 is beneficial;
    2. att_received >= tau_att and value_norm <= tau_norm is detrimental (both bounds inclusive);
    3. everything else is neutral.
    """

    tau_att: float
    tau_norm: float
    name: str = "seed"

    def labels(self, att_received: np.ndarray, value_norm: np.ndarray) -> list[str]:
        """One label per token: beneficial, detrimental or neutral."""
        out = []
        for index, (att, norm) in enumerate(zip(att_received, value_norm)):
            if index == 0:
                out.append(BENEFICIAL)
            elif att >= self.tau_att and norm <= self.tau_norm:
                out.append(DETRIMENTAL)
            else:
                out.append(NEUTRAL)
        return out


def indices_with(labels: list[str], label: str) -> list[int]:
    return [i for i, got in enumerate(labels) if got == label]


@dataclass(frozen=True)
class EvidenceRule:
    """Labels from measured effects instead of the seed's thresholds (``sinkfix.experiments.token_evidence``).

    ``delta_nll`` maps a token index to the NLL change when that token alone is redistributed
    away from. Removing a detrimental sink should help, so a token is detrimental only when the
    NLL falls by more than ``margin``, and beneficial when it rises by more. Token 0 stays
    beneficial (rule 1 of the seed, so it is never a correction target); unmeasured tokens are neutral.
    """

    delta_nll: dict[int, float]
    margin: float = 0.0
    name: str = "evidence"

    def labels(self, att_received: np.ndarray, value_norm: np.ndarray) -> list[str]:
        """One label per token: beneficial, detrimental or neutral."""
        out = []
        for index in range(len(att_received)):
            change = self.delta_nll.get(index)
            if index == 0:
                out.append(BENEFICIAL)
            elif change is None:
                out.append(NEUTRAL)
            elif change < -self.margin:
                out.append(DETRIMENTAL)
            elif change > self.margin:
                out.append(BENEFICIAL)
            else:
                out.append(NEUTRAL)
        return out
