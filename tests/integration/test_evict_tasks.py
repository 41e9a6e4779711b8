"""The generated tasks on SmolLM2's tokenizer, the ``kept`` entry point, and a small end-to-end sweep on
SmolLM2: exact lengths, the needle where its span says, determinism, the pruned answer against the
masked full forward, and greedy decoding against teacher forcing."""
from __future__ import annotations

import dataclasses

import pytest

import sinkfix
from sinkfix.errors import InputError
from sinkfix.experiments import evict
from sinkfix.experiments.evict import capture, compress, decode, sweep
from sinkfix.experiments.evict.tasks import TASKS, common, multikey, prompts

from ..evict_reference import masked_answer_logits
from ..shared_data import data_path


@pytest.mark.parametrize("task", ["passkey", "vartrack", "needle", "multikey", "ppl"])
def test_prompts_are_exact_deterministic_and_hold_their_needle(smollm2, task, monkeypatch) -> None:
    if task in ("needle", "multikey", "ppl"):
        if not data_path(common.SHAKESPEARE).exists():
            pytest.skip(f"needs {common.SHAKESPEARE} in SINKFIX_DATA")
        monkeypatch.setenv("SINKFIX_DATA", str(data_path("")))
    tok = smollm2.tokenizer
    first = TASKS[task](tok, 300, 0.4, 1)
    assert first == TASKS[task](tok, 300, 0.4, 1)
    assert len(first.context_ids) == 300 and first.answer_ids
    if task == "ppl":
        assert len(first.answer_ids) == 256 and first.question_ids == ()
        return
    start, stop = first.needle
    assert tok.decode(first.context_ids[start:stop]).find(first.answer.strip().split()[0]) >= 0
    assert abs(start / 300 - 0.4) < 0.15  # the needle at its depth (snapped back to a sentence end)
    assert TASKS[task](tok, 300, 0.4, 2).answer != first.answer  # another seed, another key


def test_multikey_keys_are_distinct_words_each_right_before_its_value(smollm2, monkeypatch) -> None:
    if not data_path(common.SHAKESPEARE).exists():
        pytest.skip(f"needs {common.SHAKESPEARE} in SINKFIX_DATA")
    monkeypatch.setenv("SINKFIX_DATA", str(data_path("")))
    item = TASKS["multikey"](smollm2.tokenizer, 600, 0.5, 3)
    opening = multikey.NEEDLE.split("{key}")[0]
    lines = [line for line in item.context.splitlines() if line.startswith(opening)]
    pairs = [line.removeprefix(opening).rstrip(".").split() for line in lines]
    assert len(pairs) == multikey.N_NEEDLES and len({key for key, _ in pairs}) == multikey.N_NEEDLES
    asked = item.question.split()[-1]
    assert [value for key, value in pairs if key == asked] == [item.answer.strip()]


def test_haystack_tasks_say_where_the_data_goes(smollm2, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SINKFIX_DATA", str(tmp_path))
    with pytest.raises(InputError, match="SINKFIX_DATA"):
        prompts(smollm2.tokenizer, "needle", [200], [0.5], 1)


def test_kept_from_python_on_text_and_ids(smollm2) -> None:
    text = "The grass is green. The sky is blue. " * 10
    by_text = evict.kept(smollm2, text, "streaming", 0.5, "first:4")
    ids = smollm2.tokenizer(text)["input_ids"]
    assert by_text == evict.kept(smollm2, ids, "streaming", 0.5, "first:4")
    n = len(ids)
    assert len(by_text) == 30 and len(by_text[0]) == 3
    assert by_text[29][2] == [0, 1, 2, 3, *range(n - (n // 2 - 4), n)]


def test_a_small_sweep_on_smollm2_end_to_end(smollm2) -> None:
    settings = sweep.SweepSettings(presses=("streaming", "pyramidkv"), ratios=(0.5,), protections=("none", "detected"),
                                   lengths=(200,), depths=(0.5,), seeds=1)
    item = prompts(smollm2.tokenizer, "passkey", [200], [0.5], 1)[0]
    row, example, pre = sweep.run_prompt(smollm2, item, settings, keep_example=True)
    assert row["dense"]["correct"]  # SmolLM2 finds the key at 200 tokens with the whole cache
    assert example["shape"] == [30, 3, 200]
    assert row["sinks"].get("0", 0) > 0  # SmolLM2 sinks on token 0 in its later layers: detected reports it
    for press in settings.presses:
        kept = compress.compress(pre, press, 0.5, "detected")
        got = decode.answer_logits(smollm2, pre, [kept], item.question_ids, item.answer_ids)[0]
        expected = masked_answer_logits(smollm2, list(item.context_ids), list(item.question_ids),
                                        list(item.answer_ids), kept.mask())
        # SmolLM2's logits reach |z| ~ 35: float32 rounding of the two summation orders is ~4e-5 there, the same
        # as the dense cache's own distance from one plain forward (the tiny models hold 1e-5).
        assert float((got - expected).abs().max()) <= 1e-4, press
        assert decode.outcome(got, item.answer_ids)[0] == row["outcomes"][press]["0.5"]["detected"]["correct"]
    decoded = sweep.run_prompt(smollm2, item, dataclasses.replace(settings, generate=True))[0]
    for press, by_protect in decoded["outcomes"].items():  # greedy decoding agrees with teacher forcing
        for protect, outcome in by_protect["0.5"].items():
            assert outcome["correct"] == row["outcomes"][press]["0.5"][protect]["correct"], (press, protect)
            assert outcome["correct"] == (outcome["generated"] == list(item.answer_ids))


def test_the_prefill_refuses_models_it_cannot_prune(minilm) -> None:
    with pytest.raises(sinkfix.SinkFixError, match="causal"):
        capture.prefill(minilm, [1, 2, 3])


def test_the_ppl_task_compares_nll_only(smollm2, monkeypatch) -> None:
    if not data_path(common.SHAKESPEARE).exists():
        pytest.skip(f"needs {common.SHAKESPEARE} in SINKFIX_DATA")
    monkeypatch.setenv("SINKFIX_DATA", str(data_path("")))
    settings = sweep.SweepSettings(task="ppl", presses=("knorm",), ratios=(0.5,), protections=("none", "first:4"),
                                   lengths=(128,), seeds=1)
    data = sweep.run_sweep(smollm2, settings).to_json()
    assert data["metric"] == "nll" and data["dense"]["accuracy"] is None
    cell = data["results"]["knorm"]["0.5"]["none"]
    assert cell["accuracy"] is None and cell["nll_delta"]["mean"] is not None
    prompt = data["prompts"][0]
    delta = prompt["outcomes"]["knorm"]["0.5"]["first:4"]["nll"] - prompt["outcomes"]["knorm"]["0.5"]["none"]["nll"]
    assert data["paired"]["knorm"]["0.5"]["first:4-none"]["mean"] == pytest.approx(delta)
