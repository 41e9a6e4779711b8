"""What every task shares: the Prompt, token-exact assembly of a context, the haystack file.

A prompt is three pieces of token ids, the context (which the press sees), the question and the
answer, plus the text they decode to, recorded exactly. Contexts are assembled from separately
tokenised pieces so a context is exactly ``length`` tokens; the recorded text is the decoding of the
ids the model saw. Every task is a pure function of (tokenizer, length, depth, seed): no download.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sinkfix.errors import InputError, SettingsError

SHAKESPEARE = "tinyshakespeare.txt"
# The passkey literature's noise filler (Mohtashami & Jaggi 2023; LongLoRA), one repeat unit.
NOISE = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."


@dataclass(frozen=True)
class Prompt:
    task: str
    length: int  # context tokens
    depth: float | None  # where the needle sits, as a fraction of the context (None: no needle)
    seed: int
    context_ids: tuple[int, ...]
    question_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    context: str
    question: str
    answer: str
    needle: tuple[int, int] | None  # token span [start, stop) of the needle in the context

    def to_json(self) -> dict:
        out = asdict(self)
        for name in ("context_ids", "question_ids", "answer_ids"):
            out.pop(name)
        out["needle"] = None if self.needle is None else list(self.needle)
        out["n_context"] = len(self.context_ids)
        out["n_answer"] = len(self.answer_ids)
        return out


def encode(tokenizer: object, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def leading(tokenizer: object) -> list[int]:
    """The tokenizer's own start-of-text ids (a BOS where the tokenizer adds one; none for SmolLM2)."""
    with_special = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    plain = encode(tokenizer, "a")
    return with_special[: len(with_special) - len(plain)] if with_special[-len(plain):] == plain else []


def repeated(tokenizer: object, unit: str, n: int) -> list[int]:
    """``n`` tokens of ``unit`` repeated, ending with a whole unit (the first one is cut instead)."""
    ids = encode(tokenizer, unit)
    if not ids:
        raise SettingsError("the filler text encodes to no tokens")
    return (ids * (n // len(ids) + 1))[-n:]


def boundary(ids: Sequence[int], at: int, stops: set[int]) -> int:
    """The last index <= ``at`` right after a token in ``stops`` (a sentence or line end), else ``at``."""
    for index in range(min(at, len(ids)), 0, -1):
        if ids[index - 1] in stops:
            return index
    return at


def place(prefix: list[int], filler: list[int], needles: Sequence[tuple[float, list[int]]], length: int,
          stops: set[int]) -> tuple[list[int], list[tuple[int, int]]]:
    """A context of exactly ``length`` tokens: prefix, then the filler's last tokens with each needle inserted
    at its depth (a fraction of the filler, snapped back to a sentence end); returns the ids and each
    needle's span."""
    room = length - len(prefix) - sum(len(ids) for _, ids in needles)
    if room < 1:
        raise SettingsError(f"a context of {length} tokens cannot hold this task's instructions and needles")
    body = filler[len(filler) - room:]  # fillers end at a sentence end, so the question follows a whole sentence
    cuts = [boundary(body, round(depth * room), stops) for depth, _ in needles]
    order = sorted(range(len(needles)), key=lambda i: (cuts[i], i))
    ids, spans, done = list(prefix), [(0, 0)] * len(needles), 0
    for i in order:
        ids += body[done:cuts[i]]
        spans[i] = (len(ids), len(ids) + len(needles[i][1]))
        ids += needles[i][1]
        done = cuts[i]
    ids += body[done:]
    return ids, spans


def stop_tokens(tokenizer: object) -> set[int]:
    """Ids that end a sentence or line, so needles go in between sentences."""
    out: set[int] = set()
    for text in (".", "\n", ".\n", "!", "?"):
        ids = encode(tokenizer, text)
        if len(ids) == 1:
            out.add(ids[0])
    return out


def rng_for(task: str, length: int, depth: float | None, seed: int) -> random.Random:
    """The prompt's own generator: the same (task, length, depth, seed) always gives the same prompt."""
    return random.Random(f"{task}|{length}|{depth}|{seed}")


def digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(10 ** (n - 1), 10 ** n - 1))


def make_prompt(tokenizer: object, task: str, length: int, depth: float | None, seed: int, context_ids: list[int],
                question: str, answer: str, needle: tuple[int, int] | None) -> Prompt:
    question_ids, answer_ids = encode(tokenizer, question), encode(tokenizer, answer)
    decode = tokenizer.decode
    return Prompt(task, length, depth, seed, tuple(context_ids), tuple(question_ids), tuple(answer_ids),
                  decode(context_ids), decode(question_ids), decode(answer_ids), needle)


def data_file(name: str = SHAKESPEARE) -> Path:
    """A file in the data folder (``SINKFIX_DATA``, else ``../shared/data`` beside the checkout)."""
    from sinkfix.policy.files import data_folders

    for folder in data_folders():
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"this task reads {name} as its haystack and it is not in the data folder "
                     f"({data_folders()[0]}): set SINKFIX_DATA to the folder holding it, or use the passkey task")


def haystack(tokenizer: object, n: int, rng: random.Random, path: Path | None = None) -> list[int]:
    """``n`` tokens of tinyshakespeare from a seeded line start, ending at a line end."""
    text = (path or data_file()).read_text(encoding="utf-8")
    lines = [i + 1 for i, c in enumerate(text) if c == "\n"]
    start = rng.choice(lines[: max(1, len(lines) // 2)])
    ids = encode(tokenizer, text[start: start + 8 * n + 800])
    ends = encode(tokenizer, "\n")
    stop = next((i for i in range(len(ids), n - 1, -1) if ids[i - 1] in ends), len(ids))
    if stop < n:
        raise InputError(f"the haystack file holds fewer than {n} tokens after its chosen start")
    return ids[stop - n: stop]
