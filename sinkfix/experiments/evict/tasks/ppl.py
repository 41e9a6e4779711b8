"""``ppl``: the NLL of the next 256 tokens of a tinyshakespeare passage after its compressed context.

No question: the continuation is the answer, scored by its NLL against the dense cache (``nll_delta``).
Accuracy is not defined for it: the sweep reports it as null and compares NLL only.
"""
from __future__ import annotations

from sinkfix.experiments.evict.tasks.common import Prompt, haystack, leading, rng_for

CONTINUATION = 256


def prompt(tokenizer: object, length: int, depth: float | None, seed: int) -> Prompt:
    rng = rng_for("ppl", length, None, seed)
    start = leading(tokenizer)
    ids = start + haystack(tokenizer, length - len(start) + CONTINUATION, rng)
    context, continuation = ids[:length], ids[length:]
    return Prompt("ppl", length, None, seed, tuple(context), (), tuple(continuation), tokenizer.decode(context), "",
                  tokenizer.decode(continuation), None)
