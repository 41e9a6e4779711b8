"""``passkey``: a 5-digit key in noise filler (Mohtashami & Jaggi 2023), over lengths and depths.

Plain text for a base model, no chat template: the instruction, the filler with the key sentence
at the given depth, then the question, and the key as the answer. SmolLM2-135M finds it dense at
0.5k-2k tokens (see docs/experiments/eviction.md for the measured dense accuracy).
"""
from __future__ import annotations

from sinkfix.experiments.evict.tasks.common import (NOISE, Prompt, digits, encode, leading, make_prompt, place,
                                                    repeated, rng_for, stop_tokens)

INTRO = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
         "I will quiz you about the important information there.")
NEEDLE = " The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "\nWhat is the pass key? The pass key is"
KEY_DIGITS = 5


def prompt(tokenizer: object, length: int, depth: float, seed: int) -> Prompt:
    rng = rng_for("passkey", length, depth, seed)
    key = digits(rng, KEY_DIGITS)
    prefix = leading(tokenizer) + encode(tokenizer, INTRO)
    needle = encode(tokenizer, NEEDLE.format(key=key))
    ids, spans = place(prefix, repeated(tokenizer, NOISE, length), [(depth, needle)], length, stop_tokens(tokenizer))
    return make_prompt(tokenizer, "passkey", length, depth, seed, ids, QUESTION, f" {key}", spans[0])
