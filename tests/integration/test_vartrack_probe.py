"""benchmarks/vartrack_probe.py: its split of an answer into names and separators, and its prompts
(the chain written forward, each name assigned once and read once, the answer's tokens labelled)."""
from __future__ import annotations

from benchmarks import vartrack_probe as probe


def test_count_scores_a_name_by_all_its_tokens_and_each_separator_alone() -> None:
    # three names (two tokens, one, two) with a separator between each
    is_separator = [False, False, True, False, True, False, False]
    right = [True, False, True, True, False, True, True]
    assert probe.count(right, is_separator) == {"names": 2, "n_names": 3, "separators": 1, "n_separators": 2}


def test_chain_prompt_writes_the_chain_forward_and_labels_the_answer(smollm2) -> None:
    tok = smollm2.tokenizer
    prefix, answer, is_separator = probe.chain_prompt(tok, 400, 0.2, 1, 3, "words", "same")
    text = tok.decode(prefix)
    names = tok.decode(answer).split(probe.SEPARATOR)
    assert len(names) == 3 and len(answer) == len(is_separator)
    assert tok.decode([t for t, sep in zip(answer, is_separator) if sep]) == probe.SEPARATOR * 2
    value = text.rsplit("Answer: ", 1)[1].split()[0]
    links = [f"{value} ->{names[0]}."] + [f"{a} ->{b}." for a, b in zip(names, names[1:])]
    positions = [text.index(link) for link in links]  # every link once, in chain order
    assert positions == sorted(positions)
    _, other, _ = probe.chain_prompt(tok, 400, 0.2, 1, 3, "words", "other")
    assert tok.decode(other) == tok.decode(answer)  # the answer keeps the names as they are read
    other_text = tok.decode(probe.chain_prompt(tok, 400, 0.2, 1, 3, "words", "other")[0])
    assert f"->{names[1].upper()}." in other_text and f"{names[1]} ->" in other_text
