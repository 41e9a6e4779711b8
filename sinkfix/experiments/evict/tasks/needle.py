"""``needle``: RULER's niah_single_2 style: a "special magic number" sentence in a tinyshakespeare haystack.

The key is a hyphenated word pair, the value a 7-digit number (RULER's defaults); the haystack is a
seeded stretch of tinyshakespeare (``SINKFIX_DATA``), the needle inserted at a line end at the depth.
The answer prefix ends with the needle's own "is:" (RULER's ends with "is"): scored by exact match,
SmolLM2 otherwise often copies the colon first, which RULER's substring match forgives.
"""
from __future__ import annotations

import random

from sinkfix.experiments.evict.tasks.common import (Prompt, digits, encode, haystack, leading, make_prompt, place,
                                                    rng_for, stop_tokens)

INTRO = ("Some special magic numbers are hidden within the following text. Make sure to memorize it. "
         "I will quiz you about the numbers afterwards.\n")
NEEDLE = "One of the special magic numbers for {key} is: {value}.\n"
QUESTION = ("\nWhat is the special magic number for {key} mentioned in the provided text? "
            "The special magic number for {key} mentioned in the provided text is:")
VALUE_DIGITS = 7
ADJECTIVES = ("quiet", "brave", "yellow", "ancient", "gentle", "bitter", "silver", "hollow", "rapid", "lucky",
              "frozen", "humble", "noisy", "purple", "tender", "wicked")
NOUNS = ("river", "falcon", "lantern", "meadow", "anchor", "violin", "harbor", "pepper", "castle", "comet",
         "tulip", "wagon", "badger", "pillow", "marble", "spoon")


def word_key(rng: random.Random, taken: set[str] = frozenset()) -> str:
    while True:
        key = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"
        if key not in taken:
            return key


def prompt(tokenizer: object, length: int, depth: float, seed: int) -> Prompt:
    rng = rng_for("needle", length, depth, seed)
    key, value = word_key(rng), digits(rng, VALUE_DIGITS)
    prefix = leading(tokenizer) + encode(tokenizer, INTRO)
    needle = encode(tokenizer, NEEDLE.format(key=key, value=value))
    ids, spans = place(prefix, haystack(tokenizer, length, rng), [(depth, needle)], length, stop_tokens(tokenizer))
    return make_prompt(tokenizer, "needle", length, depth, seed, ids, QUESTION.format(key=key), f" {value}", spans[0])
