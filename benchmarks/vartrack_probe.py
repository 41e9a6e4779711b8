"""Why SmolLM2-135M fails ``vartrack``: the hops or the format? (docs/experiments/eviction.md)

The chain is written forward, ``12345 -> tiger.`` ``tiger -> dolphin.`` …, so that listing it is
copying, and the answer is the chain, ``tiger -> dolphin -> octopus``, after a question ending
``12345 ->``. One forward per prompt with the answer teacher-forced, then each answer token is
counted as part of a name or as a separator (`` ->``):

- *names*: a name counts as right when every one of its tokens is the argmax, with the tokens
  before it (separators included) given;
- *separators*: the `` ->`` tokens that are the argmax;
- *full*: every token (the task's own exact match).

``--target-case other`` writes each name in the other case where it is assigned (``tiger -> DOLPHIN.``)
and keeps it as it was where it is read (``dolphin -> ...``) and in the answer. That separates the
two lookups: the separator can then come only from the name's next link, and the copy of the name
must change its case.

    python benchmarks/vartrack_probe.py --hops 2,5 --names words,caps --lengths 1024,2048 --seeds 2
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sinkfix.experiments.evict.tasks.common import (NOISE, digits, encode, leading, place, repeated, rng_for,
                                                    stop_tokens)
from sinkfix.experiments.evict.tasks.multikey import keys_for
from sinkfix.experiments.evict.tasks.vartrack import names_for

INTRO = "Memorize and track the chain of variable assignments hidden in the following text."
QUESTION = "\nQuestion: Follow the chain of assignments of the value {value} in the text above.\nAnswer: {value} ->"
SEPARATOR = " ->"


NAMES = {"words": keys_for, "caps": names_for}


def other_case(name: str) -> str:
    return name.lower() if name.isupper() else name.upper()


def chain_prompt(tokenizer: object, length: int, depth: float, seed: int, hops: int, names_kind: str,
                 target_case: str) -> tuple[list[int], list[int], list[bool]]:
    """Context + question ids, answer ids, and which answer tokens are separators."""
    rng = rng_for("vartrack-probe", length, depth, seed)
    value = digits(rng, 5)
    names = NAMES[names_kind](rng, hops)
    shown = [other_case(name) if target_case == "other" else name for name in names]
    lines = [f" {value} -> {shown[0]}."] + [f" {a} -> {b}." for a, b in zip(names, shown[1:])]
    step = (0.98 - depth) / max(1, hops - 1)
    needles = [(depth + i * step, encode(tokenizer, line)) for i, line in enumerate(lines)]
    prefix = leading(tokenizer) + encode(tokenizer, INTRO)
    ids, _ = place(prefix, repeated(tokenizer, NOISE, length), needles, length, stop_tokens(tokenizer))
    answer: list[int] = []
    is_separator: list[bool] = []
    for i, name in enumerate(names):
        if i:
            piece = encode(tokenizer, SEPARATOR)
            answer += piece
            is_separator += [True] * len(piece)
        piece = encode(tokenizer, " " + name)
        answer += piece
        is_separator += [False] * len(piece)
    return ids + encode(tokenizer, QUESTION.format(value=value)), answer, is_separator


def count(right: list[bool], is_separator: list[bool]) -> dict[str, int]:
    """Names right (all their tokens), separators right, out of how many."""
    out = {"names": 0, "n_names": 0, "separators": 0, "n_separators": 0}
    name_right, in_name = True, False
    for ok, sep in zip(right, is_separator):
        if sep:
            out["separators"] += ok
            out["n_separators"] += 1
            if in_name:
                out["names"] += name_right
                out["n_names"] += 1
            name_right, in_name = True, False
        else:
            name_right, in_name = name_right and ok, True
    if in_name:
        out["names"] += name_right
        out["n_names"] += 1
    return out


def probe(model: torch.nn.Module, tokenizer: object, hops: int, names_kind: str, target_case: str,
          lengths: list[int], depths: list[float], seeds: int) -> dict:
    totals = {"full": 0, "prompts": 0, "names": 0, "n_names": 0, "separators": 0, "n_separators": 0}
    for length in lengths:
        for depth in depths:
            for seed in range(seeds):
                prefix, answer, is_separator = chain_prompt(tokenizer, length, depth, seed, hops, names_kind,
                                                             target_case)
                ids = torch.tensor([prefix + answer])
                with torch.inference_mode():
                    logits = model(ids).logits[0, len(prefix) - 1: -1]
                right = (logits.argmax(-1) == torch.tensor(answer)).tolist()
                for key, value in count(right, is_separator).items():
                    totals[key] += value
                totals["full"] += all(right)
                totals["prompts"] += 1
    return {"hops": hops, "names_kind": names_kind, "target_case": target_case, **totals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", default="2,5")
    parser.add_argument("--names", default="words,caps")
    parser.add_argument("--target-case", default="same", choices=["same", "other"])
    parser.add_argument("--lengths", default="1024,2048")
    parser.add_argument("--depths", default="0.1,0.3,0.5,0.7,0.9")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import sinkfix
    loaded = sinkfix.get_model("smollm2-135m")
    lengths = [int(x) for x in args.lengths.split(",")]
    depths = [float(x) for x in args.depths.split(",")]
    for hops in (int(x) for x in args.hops.split(",")):
        for names_kind in args.names.split(","):
            row = probe(loaded.model, loaded.tokenizer, hops, names_kind, args.target_case, lengths, depths,
                        args.seeds)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
