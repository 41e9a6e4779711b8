"""The BOS ablation (Barbero et al. 2025, arXiv 2504.02732: removing the BOS sink hurts long contexts).

The same corpus windows (built without a BOS, ``windows.corpus_windows(bos="never")``) run in up to four arms:
- ``no_bos``: the window as is (SmolLM2's tokenizer adds no BOS, so its first word is token 0);
- ``bos``: the tokenizer's BOS token prepended;
- ``no_bos_masked`` / ``bos_masked``: the same, with token 0 removed from every query's softmax in every
  layer after the first (``onepass.first_layers_masked``): what removing the sink costs.
T counts the window's tokens; a BOS arm holds one more. Every arm scores the same targets: the window's
tokens 1..T−1, each from the same window prefix (the BOS arm's extra prediction of token 0 from the BOS
alone is left out), so the arms pair position by position.

Per arm and T: next-token NLL (mean over the T−1 targets, then over windows), the same over the second
half of the window's tokens only (``nll_late``: what a long context does to its late positions, which a
mean over all positions dilutes with the short-context ones), and Gu's Sink₁^ε of token 0.
In the masked arms the sink rate is what each layer's softmax gave token 0 *before* the mask removed it.
Comparisons are paired over windows: per window the difference of the two arms' mean NLL, then a
bootstrap CI over windows. One forward per window and arm at the longest T gives every shorter T: a
causal model's first T rows are the forward of its first T tokens, and the mask acts row by row.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from sinkfix.progress import Step
from sinkfix.errors import SettingsError
from sinkfix.experiments import onepass
from sinkfix.experiments.perplexity import require_causal, token_nll
from sinkfix.experiments.windows import batch_size, batches, corpus_windows, estimate
from sinkfix.models import LoadedModel
from sinkfix.settings import DEFAULT_EPSILON

ARMS = ("no_bos", "bos", "no_bos_masked", "bos_masked")
# (arm, reference): each difference is arm minus reference, paired over windows.
COMPARISONS = (("bos", "no_bos"), ("no_bos_masked", "no_bos"), ("bos_masked", "bos"))
DEFAULT_LENGTHS = (64, 128, 256, 512, 1024, 2048)
DEFAULT_WINDOWS = 8
MASK_FROM_LAYER = 1


def _check(loaded: LoadedModel, arms: Sequence[str], lengths: Sequence[int]) -> list[int]:
    require_causal(loaded)
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise SettingsError(f"arms must be among {', '.join(ARMS)}, got {', '.join(arms) or 'none'}")
    if any(a.startswith("bos") for a in arms) and getattr(loaded.tokenizer, "bos_token_id", None) is None:
        raise SettingsError(f"{loaded.name}'s tokenizer has no BOS token: run the no_bos arms only")
    chosen = sorted(set(int(t) for t in lengths))
    if not chosen or chosen[0] < 4:
        raise SettingsError("lengths must be whole numbers of at least 4 tokens")
    room = loaded.max_tokens - (1 if any(a.startswith("bos") for a in arms) else 0)
    if chosen[-1] > room:
        raise SettingsError(f"length {chosen[-1]} is over {room} tokens: {loaded.name} takes {loaded.max_tokens}, "
                            "and a BOS arm prepends one")
    return chosen


def _arm(loaded: LoadedModel, arm: str, group: list[list[int]], epsilon: float, lengths: list[int]) -> list[dict]:
    """One forward of a batch of windows in one arm -> per window {"nll": [T-1 per position], "sink_rate": {T: r}}."""
    bos = arm.startswith("bos")
    sequences = [[int(loaded.tokenizer.bos_token_id), *w] if bos else w for w in group]
    mask = onepass.first_layers_masked(loaded, MASK_FROM_LAYER) if arm.endswith("masked") else None
    result = onepass.run(loaded, sequences, intervention=mask)
    shift = 1 if bos else 0
    out = []
    for b, window in enumerate(group):
        targets = torch.tensor(window[1:])
        hidden = result.last_hidden[b, shift:shift + len(window) - 1]  # the rows that predict window[1:]
        rates = {}
        for t in lengths:
            alpha = result.token0_alpha(t + shift)[:, b]  # [La, H]
            rates[t] = float((alpha > epsilon).float().mean())
        out.append({"nll": token_nll(loaded, hidden, targets), "sink_rate": rates})
    return out


@dataclass(frozen=True)
class BosResult:
    model: str
    corpus: str
    n_windows: int
    epsilon: float
    mask_from_layer: int
    bos_token: str | None
    arms: list[str]
    lengths: list[dict]  # {"length", "arms": {arm: {"nll", "nll_late", "sink_rate"}}, "comparisons": {...}}
    notes: list[str] = field(default_factory=list)

    def headline(self) -> float | None:
        """ΔNLL of masking the BOS sink at the longest length, else the first comparison there."""
        last = self.lengths[-1]["comparisons"] if self.lengths else {}
        pick = last.get("bos_masked - bos") or next(iter(last.values()), None)
        return None if pick is None else pick["delta_nll"]["mean"]

    def to_json(self) -> dict:
        return {"kind": "bos", **self.__dict__}


def summarise(per_arm: dict[str, list[dict]], lengths: list[int], seed: int = 0) -> list[dict]:
    rows = []
    for t in lengths:
        # Target k is window token k + 1; "late" keeps the second half of the window's tokens as targets.
        nll = {arm: np.array([float(w["nll"][:t - 1].mean()) for w in windows]) for arm, windows in per_arm.items()}
        late = {arm: np.array([float(w["nll"][t // 2 - 1:t - 1].mean()) for w in windows])
                for arm, windows in per_arm.items()}
        row: dict = {"length": t, "arms": {}, "comparisons": {}}
        for arm, windows in per_arm.items():
            row["arms"][arm] = {"nll": estimate(nll[arm], seed), "nll_late": estimate(late[arm], seed),
                                "sink_rate": estimate([w["sink_rate"][t] for w in windows], seed)}
        for arm, reference in COMPARISONS:
            if arm in per_arm and reference in per_arm:
                rates = [a["sink_rate"][t] - r["sink_rate"][t] for a, r in zip(per_arm[arm], per_arm[reference])]
                row["comparisons"][f"{arm} - {reference}"] = {
                    "delta_nll": estimate(nll[arm] - nll[reference], seed),
                    "delta_nll_late": estimate(late[arm] - late[reference], seed),
                    "delta_sink_rate": estimate(rates, seed)}
        rows.append(row)
    return rows


def bos_ablation(loaded: LoadedModel, text: str, corpus: str, lengths: Sequence[int] = DEFAULT_LENGTHS,
                 n_windows: int = DEFAULT_WINDOWS, arms: Sequence[str] = ARMS, epsilon: float = DEFAULT_EPSILON,
                 seed: int = 0, progress: Step | None = None) -> BosResult:
    """NLL and sink rate against T with and without a BOS, and with the first token masked, paired over windows."""
    chosen = _check(loaded, arms, lengths)
    windows = corpus_windows(loaded, text, n_windows, chosen[-1], bos="never")
    # A tokenizer that appends a token ([SEP]-like) changes every prefix: then each length runs on its own.
    runs = [chosen[-1]] if not windows.after else chosen
    steps = [(arm, t, group) for arm in arms for t in runs for group in batches(windows.at(t), batch_size(t))]
    per_run: dict[tuple[str, int], list[dict]] = {}
    for done, (arm, t, group) in enumerate(steps, start=1):
        covered = [x for x in chosen if x <= t] if len(runs) == 1 else [t]
        per_run.setdefault((arm, t), []).extend(_arm(loaded, arm, group, epsilon, covered))
        if progress is not None:
            progress(done, len(steps), f"{arm}, T = {t}")
    if len(runs) == 1:
        rows = summarise({arm: per_run[(arm, runs[0])] for arm in arms}, chosen, seed)
    else:
        rows = [summarise({arm: per_run[(arm, t)] for arm in arms}, [t], seed)[0] for t in chosen]
    bos_id = getattr(loaded.tokenizer, "bos_token_id", None)
    notes = [f"masked arms: token 0 is removed from every query's softmax in layers {MASK_FROM_LAYER}.. "
             f"(layer {MASK_FROM_LAYER - 1} keeps it); their sink rate is measured before the mask"]
    return BosResult(loaded.name, corpus, n_windows, float(epsilon), MASK_FROM_LAYER,
                     None if bos_id is None else loaded.tokenizer.convert_ids_to_tokens(int(bos_id)),
                     list(arms), rows, notes)
