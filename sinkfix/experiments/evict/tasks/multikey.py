"""``multikey``: RULER's niah_multikey_1 style: several magic-number needles, one of them asked for.

The asked needle sits at the depth; the distractors (other keys, other values) at seeded depths.
Two changes from RULER make it a task SmolLM2-135M does with a dense cache (39/40 at 1k-2k tokens,
against 7/20 with RULER's wording, docs/experiments/eviction.md):

- the key stands right before its value ("... numbers is elephant 4540735."), where RULER puts
  "is:" between them, shared by every needle: the small model then took the value's first digit
  from the wrong needle and copied the rest from the right one;
- keys are single words, so no distractor shares a word with the asked key (RULER's word pairs
  often do, "tender-wagon" and "humble-wagon").
"""
from __future__ import annotations

import random

from sinkfix.experiments.evict.tasks.common import (Prompt, digits, encode, haystack, leading, make_prompt, place,
                                                    rng_for, stop_tokens)
from sinkfix.experiments.evict.tasks.needle import INTRO, VALUE_DIGITS

N_NEEDLES = 4
NEEDLE = "One of the special magic numbers is {key} {value}.\n"
QUESTION = ("\nWhat is the special magic number for {key} mentioned in the provided text? "
            "The special magic number is {key}")
KEYS = ("elephant", "guitar", "volcano", "pizza", "dolphin", "rocket", "library", "umbrella", "tiger", "bicycle",
        "pyramid", "carrot", "diamond", "penguin", "tornado", "kitchen", "camera", "island", "mountain", "sandwich",
        "butterfly", "piano", "octopus", "cathedral")


def keys_for(rng: random.Random, n: int) -> list[str]:
    """``n`` different single-word keys."""
    keys: list[str] = []
    while len(keys) < n:
        key = rng.choice(KEYS)
        if key not in keys:
            keys.append(key)
    return keys


def prompt(tokenizer: object, length: int, depth: float, seed: int) -> Prompt:
    rng = rng_for("multikey", length, depth, seed)
    keys = keys_for(rng, N_NEEDLES)
    values = [digits(rng, VALUE_DIGITS) for _ in keys]
    depths = [depth] + [rng.uniform(0.02, 0.98) for _ in keys[1:]]
    needles = [(d, encode(tokenizer, NEEDLE.format(key=k, value=v))) for d, k, v in zip(depths, keys, values)]
    prefix = leading(tokenizer) + encode(tokenizer, INTRO)
    ids, spans = place(prefix, haystack(tokenizer, length, rng), needles, length, stop_tokens(tokenizer))
    return make_prompt(tokenizer, "multikey", length, depth, seed, ids, QUESTION.format(key=keys[0]),
                       f" {values[0]}", spans[0])
