"""``ppl``: the NLL of the next 256 tokens of a tinyshakespeare passage after its compressed context.

No question: the continuation is the answer, scored by its NLL against the dense cache (``nll_delta``).
Accuracy is not defined for it: the sweep reports it as null and compares NLL only.
"""
from __future__ import annotations

from sinkfix.experiments.evict.tasks.common import Prompt, encode, haystack, leading, make_prompt, rng_for

CONTINUATION = 256


def prompt(tokenizer: object, length: int, depth: float | None, seed: int) -> Prompt:
    rng = rng_for("ppl", length, None, seed)
    start = leading(tokenizer)
    ids = start + haystack(tokenizer, length - len(start) + CONTINUATION, rng)
    context, continuation = ids[:length], ids[length:]
    out = make_prompt(tokenizer, "ppl", length, None, seed, context, "", "", None)
    return Prompt(out.task, out.length, None, seed, out.context_ids, (), tuple(continuation), out.context, "",
                  tokenizer.decode(continuation), None)
