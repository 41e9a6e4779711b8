"""The lab's data: Bigram-Backcopy's rules and statistics, batches as a pure function of (seed, step),
and the tokenizers a lab model is saved with (the prefix of registers and <s> that training used)."""
from __future__ import annotations

import numpy as np
import pytest

from sinkfix.errors import SettingsError
from sinkfix.experiments.lab import backcopy
from sinkfix.experiments.lab.tasks import backcopy_task, text_task


@pytest.fixture(scope="module")
def chain() -> backcopy.BackcopyChain:
    return backcopy.make_chain(n_tokens=16, n_triggers=2, alpha=0.5, task_seed=3)


def test_after_a_trigger_the_token_before_it_is_copied(chain: backcopy.BackcopyChain) -> None:
    x = backcopy.sample(chain, 200, 40, np.random.default_rng(0))
    trigger = chain.is_trigger()
    rows, cols = np.nonzero(trigger[x[:, 1:-1]])
    cols = cols + 1  # position of each trigger (never position 0: the first token is not a trigger)
    assert len(rows) > 100
    assert (x[rows, cols + 1] == x[rows, cols - 1]).all()
    assert not trigger[x[:, 0]].any()
    assert not (trigger[x[:, :-1]] & trigger[x[:, 1:]]).any()  # two triggers are never adjacent


def test_bigram_positions_follow_the_transition_matrix(chain: backcopy.BackcopyChain) -> None:
    x = backcopy.sample(chain, 4000, 30, np.random.default_rng(1))
    copies = backcopy.copy_positions(x, chain)
    prev, nxt = x[:, :-1][~copies[:, 1:]], x[:, 1:][~copies[:, 1:]]
    state = int(np.bincount(prev).argmax())  # the most visited state: enough draws for a tight check
    counts = np.bincount(nxt[prev == state], minlength=chain.n_tokens)
    empirical = counts / counts.sum()
    assert counts.sum() > 2000
    assert np.abs(empirical - chain.transition[state]).max() < 0.04


def test_chain_is_a_distribution_with_its_most_frequent_tokens_as_triggers(chain: backcopy.BackcopyChain) -> None:
    assert np.allclose(chain.transition.sum(axis=1), 1.0)
    assert np.allclose(chain.stationary @ chain.transition, chain.stationary, atol=1e-10)
    top = set(np.argsort(-chain.stationary)[:2].tolist())
    assert set(chain.triggers) == top
    again = backcopy.make_chain(n_tokens=16, n_triggers=2, alpha=0.5, task_seed=3)
    assert np.array_equal(again.transition, chain.transition)  # fixed per task seed


def test_bad_chain_settings_are_one_line_errors() -> None:
    with pytest.raises(SettingsError, match="triggers"):
        backcopy.make_chain(n_tokens=8, n_triggers=4)
    with pytest.raises(SettingsError, match="concentration"):
        backcopy.make_chain(alpha=0.0)


def test_batches_depend_on_seed_and_step_only() -> None:
    task = backcopy_task(length=12, n_registers=2, n_tokens=10, n_triggers=1)
    a, b = task.train_batch(5, 7, 4), task.train_batch(5, 7, 4)
    assert np.array_equal(a.ids, b.ids)
    assert not np.array_equal(a.ids, task.train_batch(5, 8, 4).ids)
    assert not np.array_equal(a.ids, task.train_batch(6, 7, 4).ids)
    # registers, then <s>, then content; the predictions made at the registers are not scored
    assert (a.ids[:, :3] == [task.vocab.register_ids + [task.vocab.bos_id]]).all()
    assert a.scored.shape == (4, 2 + 12) and not a.scored[:, :2].any() and a.scored[:, 2:].all()
    # copy targets: the token predicted at position p is a copy when token p is a trigger
    trig = np.isin(a.ids - task.vocab.content_offset, task.chain.triggers)
    assert np.array_equal(a.copies[:, 2:], trig[:, 2:-1])


def test_the_saved_backcopy_tokenizer_prepends_what_training_did(tmp_path) -> None:
    from transformers import AutoTokenizer

    task = backcopy_task(length=8, n_registers=2, n_tokens=10, n_triggers=1)
    task.vocab.save(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    trigger = task.chain.triggers[0]
    text = f"t{(trigger + 1) % 10} T{trigger} t{(trigger + 1) % 10}"
    ids = tok(text)["input_ids"]
    content = task.vocab.with_prefix(np.array([[(trigger + 1) % 10, trigger, (trigger + 1) % 10]]))[0]
    assert ids == content.tolist()
    assert tok.convert_ids_to_tokens(ids)[:3] == ["<reg0>", "<reg1>", "<s>"]


def test_the_character_tokenizer_reads_text_one_character_a_token(tmp_path) -> None:
    from transformers import AutoTokenizer

    source = tmp_path / "tiny.txt"
    source.write_text("to be, or not to be: that is the question.\n" * 20)
    task = text_task(length=16, n_registers=0, text_file=source)
    task.vocab.save(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    ids = tok("to be")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<s>", "t", "o", " ", "b", "e"]
    window = task.validation(3)
    assert window.ids.shape == (3, 17) and (window.ids[:, 0] == task.vocab.bos_id).all()
    assert tok.decode(window.ids[0], skip_special_tokens=True) in source.read_text()
