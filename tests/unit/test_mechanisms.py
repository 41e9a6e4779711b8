"""Mechanism definitions on hand-built tensors and tiny random models: Gu et al.'s sink rate per kind,
the sequence builders, Sun et al.'s massive rule, the residual edit hook, and BOS handling."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import sinkfix
from sinkfix.analysis import metrics
from sinkfix.analysis.tokens import bos_ids, tokenize
from sinkfix.capture import residual
from sinkfix.errors import SettingsError
from sinkfix.experiments import massive, sinkrate


@pytest.fixture(scope="module")
def tiny_llama(tiny_model_dirs: dict[str, Path]) -> sinkfix.LoadedModel:
    return sinkfix.load_model(str(tiny_model_dirs["llama"]))


@pytest.fixture(scope="module")
def tiny_bert(tiny_model_dirs: dict[str, Path]) -> sinkfix.LoadedModel:
    return sinkfix.load_model(str(tiny_model_dirs["bert"]))


# ---------------------------------------------------------------- sink rate


def test_first_token_rates_on_a_hand_made_alpha() -> None:
    # alpha [L=2, B=2, H=2, T=3]; sequence 0 has 3 of 4 (l, h) above 0.3 on token 0, sequence 1 has 1.
    alpha = torch.zeros(2, 2, 2, 3)
    alpha[0, 0, :, 0] = torch.tensor([0.9, 0.5])
    alpha[1, 0, :, 0] = torch.tensor([0.31, 0.3])  # 0.3 is not above epsilon
    alpha[1, 1, 1, 0] = 0.7
    alpha[0, 1, 0, 2] = 0.8  # token 2 of sequence 1, one pair
    per_sequence, per_layer, per_position = sinkrate.first_token_rates(alpha, 0.3)
    np.testing.assert_allclose(per_sequence, [0.75, 0.25])
    np.testing.assert_allclose(per_layer, [[1.0, 0.5], [0.0, 0.5]])
    np.testing.assert_allclose(per_position, [[0.75, 0.0, 0.0], [0.25, 0.0, 0.25]])
    assert sinkrate.bootstrap_ci(per_sequence)[0] >= 0.25 and sinkrate.bootstrap_ci(per_sequence)[1] <= 0.75


def test_received_observer_sums_query_blocks_like_the_full_mean() -> None:
    probs = torch.softmax(torch.randn(3, 2, 7, 7), dim=-1)
    observer = sinkrate.ReceivedObserver()
    for start in range(0, 7, 3):
        observer.observe(0, probs[:, :, start:start + 3], torch.zeros(3, 1, 7, 4), probs, start=start)
    torch.testing.assert_close(observer.received()[0], metrics.received(probs))


def test_random_and_repeated_sequences_hold_only_ordinary_ids(tiny_llama: sinkfix.LoadedModel) -> None:
    tokenizer = tiny_llama.tokenizer
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    assert {"<s>", "</s>", "[PAD]", "[UNK]"} <= set(tokenizer.get_added_vocab())
    random = sinkrate.build_sequences(tiny_llama, "random", 20, 12, seed=1)
    repeated = sinkrate.build_sequences(tiny_llama, "repeated", 20, 12, seed=1)
    for sequences in (random, repeated):
        assert all(len(s) == 12 for s in sequences)
        assert not special & {i for s in sequences for i in s}
    assert all(len(set(s)) == 1 for s in repeated)
    assert len({s[0] for s in repeated}) > 1  # a fresh token per sequence
    assert len({i for s in random for i in s}) > 10


def test_natural_windows_are_consecutive_token_ids(tiny_llama: sinkfix.LoadedModel) -> None:
    text = " ".join(["the cat sat on the mat and the dog sat on a sun ."] * 6)
    ids = tiny_llama.tokenizer(text, add_special_tokens=False)["input_ids"]
    sequences = sinkrate.build_sequences(tiny_llama, "natural", 4, 8, text)
    assert sequences == [ids[k * 8:(k + 1) * 8] for k in range(4)]
    always = sinkrate.build_sequences(tiny_llama, "natural", 4, 8, text, bos="always")
    bos = tiny_llama.tokenizer.bos_token_id
    assert always == [[bos] + ids[k * 7:(k + 1) * 7] for k in range(4)]


def test_encoder_sequences_keep_cls_and_sep(tiny_bert: sinkfix.LoadedModel) -> None:
    tok = tiny_bert.tokenizer
    for kind in ("random", "repeated"):
        for s in sinkrate.build_sequences(tiny_bert, kind, 5, 10):
            assert s[0] == tok.cls_token_id and s[-1] == tok.sep_token_id and len(s) == 10
            assert tok.cls_token_id not in s[1:-1] and tok.sep_token_id not in s[1:-1]


def test_protocol_matches_alpha_from_plain_attention_weights(tiny_llama: sinkfix.LoadedModel) -> None:
    """Independent check: alpha from the model's returned attention weights, sink rate counted by hand."""
    result = sinkrate.sink_rate_protocol(tiny_llama, ("random", "repeated"), n=6, length=8, epsilon=0.35,
                                         batch_size=4, seed=3)
    for kind in ("random", "repeated"):
        ids = torch.tensor(sinkrate.build_sequences(tiny_llama, kind, 6, 8, seed=3))
        with torch.inference_mode():
            attentions = tiny_llama.model(input_ids=ids, output_attentions=True).attentions  # L x [B, H, T, T]
        rates = []
        for b in range(6):
            above = []
            for layer in attentions:
                column = layer[b, :, :, 0]  # [H, T]: every query sees token 0
                above += [float(column[h].mean()) > 0.35 for h in range(column.shape[0])]
            rates.append(np.mean(above))
        assert result.kinds[kind].rate == pytest.approx(np.mean(rates), abs=1e-6)
        assert len(result.kinds[kind].per_layer) == tiny_llama.n_layers
        low, high = result.kinds[kind].ci95
        assert low <= result.kinds[kind].rate <= high


def test_protocol_rejects_bad_settings(tiny_llama: sinkfix.LoadedModel) -> None:
    with pytest.raises(SettingsError):
        sinkrate.sink_rate_protocol(tiny_llama, ("noise",), n=4, length=8)
    with pytest.raises(SettingsError):
        sinkrate.sink_rate_protocol(tiny_llama, ("random",), n=4, length=1000)
    with pytest.raises(sinkfix.errors.InputError):
        sinkrate.sink_rate_protocol(tiny_llama, ("natural",), n=4, length=8)


# ---------------------------------------------------------------- massive activations


def _hand_hidden() -> torch.Tensor:
    """[L=2, T=4, D=8]: layer 0 tame; layer 1 with one massive entry, one large-but-not-1000x one."""
    hidden = torch.full((2, 4, 8), 0.1)
    hidden[0, 2, 3] = -5.0
    hidden[1, 0, 6] = -500.0  # > 100 and 5000x the median 0.1
    hidden[1, 3, 1] = 90.0  # 900x the median but not > 100
    return hidden


def test_massive_rule_and_layer_stats_on_a_hand_built_tensor() -> None:
    hidden = _hand_hidden()
    mask = massive.massive_mask(hidden[1])
    assert residual.features_of(mask) == ((0, 6),)
    assert not massive.massive_mask(hidden[0]).any()
    assert residual.features_of(massive.massive_mask(hidden[1], abs_threshold=50)) == ((0, 6),)  # 900x < 1000x
    assert residual.features_of(massive.massive_mask(hidden[1], abs_threshold=50, ratio=500)) == ((0, 6), (3, 1))
    rows = massive.layer_stats(hidden, ["a", "b", "c", "d"])
    assert (rows[1]["token"], rows[1]["dim"], rows[1]["value"]) == (0, 6, -500.0)
    assert rows[1]["median_abs"] == pytest.approx(0.1)
    assert rows[1]["ratio"] == pytest.approx(5000.0)
    assert (rows[0]["token"], rows[0]["dim"], rows[0]["n_massive"], rows[1]["n_massive"]) == (2, 3, 0, 1)
    assert massive.first_massive_layer(hidden) == 1
    top = massive.top_features(hidden, ["a", "b", "c", "d"], k=2)
    assert [(r["layer"], r["token"], r["dim"]) for r in top] == [(1, 0, 6), (1, 3, 1)]


def test_edit_hook_changes_exactly_the_chosen_features(tiny_llama: sinkfix.LoadedModel) -> None:
    ids = torch.tensor([tiny_llama.tokenizer("the cat sat on the mat")["input_ids"]])
    with residual.recording(tiny_llama.model) as clean:
        tiny_llama.model(input_ids=ids)
    features, values = ((0, 3), (2, 5)), (0.0, 7.5)
    with residual.recording(tiny_llama.model) as edited, residual.editing(
            tiny_llama.model, residual.ResidualEdit(0, features, values)):
        tiny_llama.model(input_ids=ids)
    changed = (edited[0] != clean[0]).nonzero().tolist()
    assert sorted((t, d) for _, t, d in changed) == sorted(features)
    assert float(edited[0][0, 0, 3]) == 0.0 and float(edited[0][0, 2, 5]) == 7.5
    assert not torch.equal(edited[1], clean[1])  # the next layer sees the edit
    with residual.recording(tiny_llama.model) as again:  # no edit outside the context
        tiny_llama.model(input_ids=ids)
    torch.testing.assert_close(again[1], clean[1], rtol=0, atol=0)


def test_zero_and_mean_arms_against_a_plain_loss(tiny_llama: sinkfix.LoadedModel) -> None:
    """Loose thresholds flag entries in a random model; the baseline NLL equals the model's own loss."""
    text = "the cat sat on the mat and the dog sat on a sun"
    reference = ["a bird flew over the hill and a fox ran in the rain"]
    result = massive.massive_activations(tiny_llama, text, reference, abs_threshold=0.0, ratio=3.0)
    assert result.first_massive_layer is not None and result.intervention is not None
    ids = torch.tensor([tiny_llama.tokenizer(text)["input_ids"]])
    with torch.inference_mode():
        loss = float(tiny_llama.model(input_ids=ids, labels=ids).loss)
    arms = result.intervention["arms"]
    assert arms["zero"]["baseline_nll"] == pytest.approx(loss, rel=1e-5)
    assert arms["zero"]["delta_nll"] != 0.0
    low, high = arms["mean"]["ci95"]
    assert low <= arms["mean"]["delta_nll"] <= high
    assert len(result.peak) == tiny_llama.n_layers and len(result.peak[0]) == ids.shape[1]


def test_mean_arm_on_one_chunk_without_a_reference_is_refused(tiny_llama: sinkfix.LoadedModel) -> None:
    """With one chunk and no reference the mean of each massive entry is the entry itself: ΔNLL 0 by
    construction. It is refused before any forward, and the zero arm alone still runs."""
    text = "the cat sat on the mat and the dog sat on a sun"
    with pytest.raises(SettingsError, match="needs a reference text"):
        massive.massive_activations(tiny_llama, text, abs_threshold=0.0, ratio=3.0)
    zero = massive.massive_activations(tiny_llama, text, abs_threshold=0.0, ratio=3.0, arms=("zero",))
    assert set(zero.intervention["arms"]) == {"zero"} and zero.intervention["reference"] == "none (zero arm only)"
    # Two chunks of the text itself: the means come from both, so the mean arm is no longer empty.
    two = massive.massive_activations(tiny_llama, text * 2, abs_threshold=0.0, ratio=3.0, max_tokens=12)
    assert two.intervention["n_chunks"] >= 2 and set(two.intervention["arms"]) == {"zero", "mean"}


def test_intervention_needs_a_causal_lm_head(tiny_bert: sinkfix.LoadedModel) -> None:
    with pytest.raises(SettingsError, match="causal LM head"):
        massive.massive_activations(tiny_bert, "the cat sat")
    result = massive.massive_activations(tiny_bert, "the cat sat", intervene=False)
    assert result.tokens[0] == "[CLS]" and result.intervention is None


# ---------------------------------------------------------------- BOS


def _adding_bos(tokenizer):
    from tokenizers import processors

    bos = tokenizer.bos_token
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)])
    return tokenizer


def test_bos_auto_always_never(tiny_model_dirs: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(tiny_model_dirs["llama"])
    adds = _adding_bos(AutoTokenizer.from_pretrained(tiny_model_dirs["llama"]))
    bos, body = plain.bos_token_id, plain("the cat sat", add_special_tokens=False)["input_ids"]
    assert adds("the cat sat")["input_ids"] == [bos, *body]  # the helper did make it add one
    cases = {
        (plain, "auto"): body, (plain, "always"): [bos, *body], (plain, "never"): body,
        (adds, "auto"): [bos, *body], (adds, "always"): [bos, *body], (adds, "never"): body,
    }
    for (tokenizer, mode), expected in cases.items():
        encoded, n_total = tokenize(SimpleNamespace(tokenizer=tokenizer), "the cat sat", 100, mode)
        assert encoded["input_ids"][0].tolist() == expected, mode
        assert encoded["attention_mask"][0].tolist() == [1] * len(expected)
        assert n_total == len(expected)
        offsets = encoded["offset_mapping"][0].tolist()
        assert offsets[-3:] == [[0, 3], [4, 7], [8, 11]] and len(offsets) == len(expected)
        if expected[0] == bos:
            assert offsets[0] == [0, 0]
        assert bos_ids(tokenizer, tokenizer("the cat sat")["input_ids"], mode) == expected


def test_bos_always_truncates_within_the_limit(tiny_model_dirs: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["llama"])
    encoded, n_total = tokenize(SimpleNamespace(tokenizer=tokenizer), "the cat sat on the mat", 4, "always")
    ids = encoded["input_ids"][0].tolist()
    assert len(ids) == 4 and ids[0] == tokenizer.bos_token_id and n_total == 7
    assert ids[1:] == tokenizer("the cat sat", add_special_tokens=False)["input_ids"]


def test_bos_is_a_no_op_without_a_bos_token(tiny_model_dirs: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["bert"])  # [CLS] is not a BOS token
    for mode in ("always", "never"):
        encoded, _ = tokenize(SimpleNamespace(tokenizer=tokenizer), "the cat", 100, mode)
        assert encoded["input_ids"][0].tolist() == tokenizer("the cat")["input_ids"]


def test_recorded_outputs_are_the_models_hidden_states(tiny_bert: sinkfix.LoadedModel,
                                                       tiny_llama: sinkfix.LoadedModel) -> None:
    """Independent check of the hooks: output_hidden_states[l + 1] is layer l's output (LLaMA's last is
    after the final norm, so only its earlier layers are compared)."""
    for loaded, compared in ((tiny_bert, tiny_bert.n_layers), (tiny_llama, tiny_llama.n_layers - 1)):
        ids = torch.tensor([loaded.tokenizer("the cat sat on the mat")["input_ids"]])
        with torch.inference_mode(), residual.recording(loaded.model) as record:
            states = loaded.base(input_ids=ids, output_hidden_states=True).hidden_states
        assert sorted(record) == list(range(loaded.n_layers))
        for layer in range(compared):
            torch.testing.assert_close(record[layer], states[layer + 1], rtol=0, atol=0)


def test_top_activation_summary_equals_the_full_layer_stats(tiny_llama: sinkfix.LoadedModel) -> None:
    ids = tiny_llama.tokenizer("the cat sat on the mat and the dog")["input_ids"]
    tokens = tiny_llama.tokenizer.convert_ids_to_tokens(ids)
    with torch.inference_mode(), residual.recording(tiny_llama.model) as record:
        tiny_llama.base(input_ids=torch.tensor([ids]))
    rows = massive.layer_stats(residual.stacked(record), tokens)
    expected = max(rows, key=lambda row: row["max_abs"])
    summary = massive.top_activation(tiny_llama, ids, tokens)
    for key in ("layer", "token", "dim", "max_abs", "value", "median_abs", "ratio", "token_text"):
        assert summary["top"][key] == pytest.approx(expected[key]) if isinstance(expected[key], float) \
            else summary["top"][key] == expected[key]
    first = residual.stacked(record)[:, 0].abs()
    assert summary["token0"]["max_abs"] == pytest.approx(float(first.max()))
    assert summary["top"]["massive"] is False  # a random tiny model has none
