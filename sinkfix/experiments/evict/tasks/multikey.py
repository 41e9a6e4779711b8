"""``multikey``: RULER's niah_multikey_1 style: several magic-number needles, one of them asked for.

The asked needle sits at the depth; the distractors (other keys, other values) at seeded depths.
SmolLM2-135M often answers with a distractor's value even with a dense cache (7/20 at 1k-2k tokens).
"""
from __future__ import annotations

from sinkfix.experiments.evict.tasks.common import (Prompt, digits, encode, haystack, leading, make_prompt, place,
                                                    rng_for, stop_tokens)
from sinkfix.experiments.evict.tasks.needle import INTRO, NEEDLE, QUESTION, VALUE_DIGITS, word_key

N_NEEDLES = 4


def prompt(tokenizer: object, length: int, depth: float, seed: int) -> Prompt:
    rng = rng_for("multikey", length, depth, seed)
    keys: list[str] = []
    for _ in range(N_NEEDLES):
        keys.append(word_key(rng, set(keys)))
    values = [digits(rng, VALUE_DIGITS) for _ in keys]
    depths = [depth] + [rng.uniform(0.02, 0.98) for _ in keys[1:]]
    needles = [(d, encode(tokenizer, NEEDLE.format(key=k, value=v))) for d, k, v in zip(depths, keys, values)]
    prefix = leading(tokenizer) + encode(tokenizer, INTRO)
    ids, spans = place(prefix, haystack(tokenizer, length, rng), needles, length, stop_tokens(tokenizer))
    return make_prompt(tokenizer, "multikey", length, depth, seed, ids, QUESTION.format(key=keys[0]),
                       f" {values[0]}", spans[0])
