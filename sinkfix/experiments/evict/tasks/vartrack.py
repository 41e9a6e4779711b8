"""``vartrack``: RULER's variable tracking style: a chain ``X1 = 12345``, ``X2 = X1``, ... in noise filler.

The question asks for every name that holds the value; the answer lists them in chain order. The
first assignment sits at the depth, the others spread evenly between it and the end. SmolLM2-135M
does not do this task with a dense cache (0/20; other name shapes, fewer hops, a one-shot example and
a chain written forward did not help, see docs/experiments/eviction.md), so on that model it measures
nothing. With the chain written forward the model follows most hops when the separators are given
(benchmarks/vartrack_probe.py), but never writes the separator after the first name: the answer
repeats an assignment and must leave it where the assignment ends. It is meant for larger models
(not measured here: none is available offline).
"""
from __future__ import annotations

import random
import string

from sinkfix.experiments.evict.tasks.common import (NOISE, Prompt, digits, encode, leading, make_prompt, place,
                                                    repeated, rng_for, stop_tokens)

INTRO = "Memorize and track the chain of variable assignments hidden in the following text."
HOPS = 5
QUESTION = ("\nQuestion: Find all variables that are assigned the value {value} in the text above. Answer: "
            "According to the chain of variable assignments in the text above, {n} variables are assigned the "
            "value {value}, they are:")


def names_for(rng: random.Random, n: int) -> list[str]:
    """``n`` different names of five capital letters, RULER's variable names."""
    names: list[str] = []
    while len(names) < n:
        name = "".join(rng.choice(string.ascii_uppercase) for _ in range(5))
        if name not in names:
            names.append(name)
    return names


def prompt(tokenizer: object, length: int, depth: float, seed: int) -> Prompt:
    rng = rng_for("vartrack", length, depth, seed)
    value = digits(rng, 5)
    names = names_for(rng, HOPS)
    lines = [f" VAR {names[0]} = {value}."] + [f" VAR {b} = VAR {a}." for a, b in zip(names, names[1:])]
    step = (0.98 - depth) / max(1, HOPS - 1)
    needles = [(depth + i * step, encode(tokenizer, line)) for i, line in enumerate(lines)]
    prefix = leading(tokenizer) + encode(tokenizer, INTRO)
    ids, spans = place(prefix, repeated(tokenizer, NOISE, length), needles, length, stop_tokens(tokenizer))
    answer = " " + " ".join(names)
    return make_prompt(tokenizer, "vartrack", length, depth, seed, ids, QUESTION.format(value=value, n=HOPS),
                       answer, (spans[0][0], spans[-1][1]))
