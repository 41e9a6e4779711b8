"""The 2025 findings' core on tiny random models, each number against an independent computation: the
one-pass statistics against Gu's protocol and the model's own hidden states, the causal-prefix shortcut
against separate forwards, the masked arm against an additive mask, the BOS arms' NLL against plain
forwards, and the secondary-sink counts and precision/recall by hand."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import sinkfix
from sinkfix.analysis import metrics
from sinkfix.capture.attention import masking
from sinkfix.errors import SettingsError
from sinkfix.experiments import bos_ablation, lengths, onepass, profile, secondary, sinkrate
from sinkfix.experiments.perplexity import sequence_nll
from sinkfix.experiments.windows import corpus_windows, estimate

from ..tiny_models import WORDS

TEXT = " ".join(random.Random(0).choices(WORDS, k=4000))
QK_NAMES = ("q_proj", "k_proj", "query", "key")


def sharpened(path: Path) -> sinkfix.LoadedModel:
    """A tiny random model with its query/key weights x 8: peaked attention, so rates are not all 0 or 1
    (this module's own copy: load_model loads afresh)."""
    loaded = sinkfix.load_model(str(path))
    with torch.no_grad():
        for name, parameter in loaded.model.named_parameters():
            if parameter.dim() == 2 and any(key in name for key in QK_NAMES):
                parameter.mul_(8.0)
    return loaded


def middle_epsilon(alpha: torch.Tensor) -> float:
    """A threshold between the two middle α values, so "above ε" splits the heads and no value sits on it."""
    values = alpha.flatten().sort().values
    middle = len(values) // 2
    return float(values[middle - 1] + values[middle]) / 2


@pytest.fixture(scope="module")
def llama(tiny_model_dirs: dict[str, Path]) -> sinkfix.LoadedModel:
    return sharpened(tiny_model_dirs["llama"])


@pytest.fixture(scope="module")
def bert(tiny_model_dirs: dict[str, Path]) -> sinkfix.LoadedModel:
    return sharpened(tiny_model_dirs["bert"])


def test_windows_are_prefixes_of_the_longest(llama: sinkfix.LoadedModel, bert: sinkfix.LoadedModel) -> None:
    windows = corpus_windows(llama, TEXT, 3, 40)
    assert [len(w) for w in windows.at(40)] == [40] * 3
    assert all(long[:16] == short for long, short in zip(windows.at(40), windows.at(16)))
    wrapped = corpus_windows(bert, TEXT, 2, 20).at(10)  # [CLS] body [SEP], cut inside
    assert all(w[0] == bert.tokenizer.cls_token_id and w[-1] == bert.tokenizer.sep_token_id and len(w) == 10
               for w in wrapped)
    with pytest.raises(SettingsError):
        corpus_windows(llama, TEXT, 2, 500)
    assert estimate([0.5])["ci95"] is None and estimate([1, 2, 3])["rough"]


def test_one_pass_matches_gu_protocol_and_hidden_states(llama: sinkfix.LoadedModel) -> None:
    sequences = corpus_windows(llama, TEXT, 3, 24).at(24)
    result = onepass.run(llama, sequences, entropy=True, massive=True, columns=True)
    eps = middle_epsilon(result.token0_alpha())
    _, per_layer, _ = sinkrate.measure(llama, sequences, eps)  # [n, L]: share of heads with α₀ > ε
    mine = (result.token0_alpha() > eps).float().mean(dim=-1).T.numpy()
    np.testing.assert_allclose(mine, per_layer)
    assert 0 < per_layer.mean() < 1
    # α for every key from the column sums equals Gu's protocol's α (its observer, its reduction).
    observer = sinkrate.ReceivedObserver()
    with torch.inference_mode(), sinkfix.capture.attention.observing(observer):
        llama.base(input_ids=torch.tensor(sequences))
    torch.testing.assert_close(result.alpha(), metrics.visible_query_mean(observer.received(), True))
    with torch.inference_mode():
        hidden = llama.base(input_ids=torch.tensor(sequences), output_hidden_states=True).hidden_states
    for layer in range(llama.n_layers - 1):  # the last entry of hidden_states has the final norm applied
        torch.testing.assert_close(result.norms[layer], hidden[layer + 1].norm(dim=-1))
        direct = hidden[layer + 1].abs()
        expected = (direct > 100) & (direct > 1000 * direct.flatten(1).median(dim=1).values[:, None, None])
        assert torch.equal(result.massive()[layer], expected.any(dim=-1))


def test_token0_alpha_of_a_prefix_is_the_prefix_forward(llama: sinkfix.LoadedModel, bert: sinkfix.LoadedModel) -> None:
    windows = corpus_windows(llama, TEXT, 2, 48)
    full = onepass.run(llama, windows.at(48))
    for t in (8, 20, 48):
        alone = onepass.run(llama, windows.at(t))
        torch.testing.assert_close(full.token0_alpha(t), alone.token0_alpha(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(full.norms[..., :t], alone.norms, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError):
        onepass.run(bert, corpus_windows(bert, TEXT, 1, 20).at(20)).token0_alpha(10)


def test_length_sweep_equals_separate_eager_forwards(llama: sinkfix.LoadedModel, tiny_model_dirs: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(str(tiny_model_dirs["llama"]), attn_implementation="eager").eval()
    with torch.no_grad():  # the same sharpening as the fixture's
        for name, parameter in eager.named_parameters():
            if parameter.dim() == 2 and any(key in name for key in QK_NAMES):
                parameter.mul_(8.0)
    windows = corpus_windows(llama, TEXT, 3, 64)
    eps = middle_epsilon(onepass.run(llama, windows.at(32)).token0_alpha())
    result = lengths.length_sweep(llama, TEXT, "toy", lengths=[16, 32, 64], n_windows=3, epsilon=eps)
    assert result.one_forward and [r["length"] for r in result.lengths] == [16, 32, 64]
    for row in result.lengths:
        t = row["length"]
        with torch.inference_mode():  # a separate forward of each prefix, transformers' own eager attention
            out = eager(input_ids=torch.tensor(windows.at(t)), output_attentions=True, output_hidden_states=True)
        first = torch.stack(out.attentions)[..., 0]  # [L, B, H, T]: A[i, 0] per query row
        alpha = first.mean(dim=-1)  # token 0 is seen by all T queries
        assert row["sink_rate"]["mean"] == pytest.approx(float((alpha > eps).float().mean()), abs=1e-6)
        assert row["first_token_mass"]["mean"] == pytest.approx(float(alpha.mean()), abs=1e-5)
        assert row["late_first_token_mass"]["mean"] == pytest.approx(float(first[..., t // 2:].mean()), abs=1e-5)
        norms = torch.stack(out.hidden_states[1:-1]).norm(dim=-1)  # layers 0..L-2 (the last is normed)
        assert row["token0_norm"]["mean"] >= float(norms[:, :, 0].max(dim=0).values.mean()) - 1e-4
    assert 0 < result.lengths[1]["sink_rate"]["mean"] < 1  # ε was chosen at T = 32
    assert len({round(r["token0_norm"]["mean"], 4) for r in result.lengths}) == 1  # causal: token 0 sees itself only
    assert result.trend["from"] == 16 and result.trend["to"] == 64


def test_masked_arm_equals_an_additive_mask_on_key_0(llama: sinkfix.LoadedModel) -> None:
    ids = corpus_windows(llama, TEXT, 1, 20).at(20)
    every_layer = onepass.first_layers_masked(llama, from_layer=0)
    assert every_layer.layers == (0, 1) and onepass.first_layers_masked(llama).layers == (1,)
    hidden = onepass.run(llama, ids, intervention=every_layer).last_hidden
    extra = torch.zeros(20, 20)
    extra[1:, 0] = torch.finfo(torch.float32).min  # every query but the first loses key 0
    with torch.inference_mode(), masking(extra):
        expected = llama.base(input_ids=torch.tensor(ids)).last_hidden_state
    torch.testing.assert_close(hidden, expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(hidden, onepass.run(llama, ids).last_hidden)


def test_bos_ablation_scores_the_same_targets(llama: sinkfix.LoadedModel) -> None:
    result = bos_ablation.bos_ablation(llama, TEXT, "toy", lengths=(8, 24), n_windows=3, epsilon=0.15)
    windows = corpus_windows(llama, TEXT, 3, 24, bos="never").at(24)
    bos_id = llama.tokenizer.bos_token_id
    for row in result.lengths:
        t = row["length"]
        plain_all = [sequence_nll(llama, torch.tensor(w[:t])) for w in windows]  # entry k predicts token k + 1
        bos_all = [sequence_nll(llama, torch.tensor([bos_id, *w[:t]]))[1:] for w in windows]
        plain, with_bos = [x.mean() for x in plain_all], [x.mean() for x in bos_all]
        late = np.mean([b[t // 2 - 1:].mean() - p[t // 2 - 1:].mean() for b, p in zip(bos_all, plain_all)])
        assert row["comparisons"]["bos - no_bos"]["delta_nll_late"]["mean"] == pytest.approx(late, abs=1e-4)
        assert row["arms"]["no_bos"]["nll"]["mean"] == pytest.approx(np.mean(plain), abs=1e-4)
        assert row["arms"]["bos"]["nll"]["mean"] == pytest.approx(np.mean(with_bos), abs=1e-4)
        delta = row["comparisons"]["bos - no_bos"]["delta_nll"]
        assert delta["mean"] == pytest.approx(np.mean(with_bos) - np.mean(plain), abs=1e-4)
        assert delta["ci95"][0] <= delta["mean"] <= delta["ci95"][1]
    assert set(result.lengths[0]["comparisons"]) == {"bos - no_bos", "no_bos_masked - no_bos", "bos_masked - bos"}
    with pytest.raises(SettingsError, match="prepends one"):
        bos_ablation.bos_ablation(llama, TEXT, "toy", lengths=(128,), n_windows=1)


def test_secondary_sinks_by_hand(llama: sinkfix.LoadedModel) -> None:
    sequences = corpus_windows(llama, TEXT, 2, 40).at(40)
    observer = sinkrate.ReceivedObserver()  # α from Gu's protocol's observer, not the one under test
    with torch.inference_mode(), sinkfix.capture.attention.observing(observer):
        llama.base(input_ids=torch.tensor(sequences))
    alpha = metrics.visible_query_mean(observer.received(), True)  # [L, B, H, T]
    eps = float(alpha[..., 1:33].flatten().quantile(0.95))  # a few keys past token 0 pass it
    share = (alpha > eps).float().mean(dim=2)  # [L, B, T]
    expected = [(b, j) for b in range(2) for j in range(1, 33) if bool((share[:, b, j] >= 0.25).any())]
    assert 0 < len(expected) < 64
    result = secondary.secondary_sinks(llama, TEXT, "toy", n_windows=2, length=40, epsilon=eps, share=0.25,
                                       min_queries=8)
    assert [(s["window"], s["position"]) for s in result.sinks] == expected
    assert result.n_candidates == 2 * 32
    assert sum(result.by_layer) == sum(len(s["layers"]) for s in result.sinks)
    assert sum(k["sinks"] for k in result.by_kind) == len(result.sinks)
    assert sum(k["candidates"] for k in result.by_kind) == result.n_candidates


def test_precision_and_recall_pool_windows() -> None:
    def window(sink: list[bool], flagged: list[bool]) -> secondary.Window:
        n = len(sink)
        return secondary.Window(np.arange(1, n + 1), ["x"] * n, ["word"] * n, np.array(sink), np.array(flagged),
                                np.zeros(n))

    windows = [window([True, True, False], [True, False, True]), window([False, True, False], [False, True, False])]
    found = secondary.prediction(windows, [w.massive for w in windows])
    assert found["precision"]["value"] == pytest.approx(2 / 3) and found["recall"]["value"] == pytest.approx(2 / 3)
    assert found["precision"]["hits"] == 2 and found["precision"]["total"] == 3
    nothing = secondary.prediction(windows, [np.zeros(3, dtype=bool)] * 2)
    assert nothing["precision"]["value"] is None and nothing["recall"]["value"] == 0.0


def test_token_kinds() -> None:
    assert secondary.token_kind("\n", "x", False) == "newline"
    assert secondary.token_kind(" ,", "x", False) == "punctuation"
    assert secondary.token_kind("Second", "\n", False) == "after newline"
    assert secondary.token_kind("<s>", "x", True) == "special"
    assert secondary.token_kind(" the", "x", False) == "word"


def test_profile_per_text_against_direct_figures(bert: sinkfix.LoadedModel) -> None:
    sequences = corpus_windows(bert, TEXT, 3, 24).at(24)
    eps = middle_epsilon(onepass.run(bert, sequences).token0_alpha())
    result = profile.profile_corpus(bert, TEXT, "toy", n_windows=3, length=24, epsilon=eps)
    _, per_layer, _ = sinkrate.measure(bert, sequences, eps)
    assert 0 < per_layer.mean() < 1
    with torch.inference_mode():
        hidden = bert.base(input_ids=torch.tensor(sequences), output_hidden_states=True).hidden_states[1:]
    from tests.unit.test_representation_entropy import direct_entropy

    assert result.n_texts == 3 and len(result.layers) == bert.n_layers
    for layer, row in enumerate(result.layers):
        assert row["sink_rate"]["mean"] == pytest.approx(per_layer[:, layer].mean(), abs=1e-6)
        norms = hidden[layer].norm(dim=-1)
        assert row["token0_norm"]["mean"] == pytest.approx(float(norms[:, 0].mean()), rel=1e-5)
        assert row["median_norm"]["mean"] == pytest.approx(float(np.median(norms.numpy(), axis=1).mean()), rel=1e-5)
        entropies = [direct_entropy(hidden[layer][b].double().numpy()) for b in range(3)]
        assert row["repr_entropy"]["mean"] == pytest.approx(np.mean(entropies), abs=1e-4)
        assert row["repr_entropy"]["ci95"][0] <= row["repr_entropy"]["mean"] <= row["repr_entropy"]["ci95"][1]
    single = profile.profile_texts(bert, ["the cat sat on the mat"], epsilon=eps)
    assert single.n_texts == 1 and single.layers[0]["token0_norm"]["ci95"] is None and single.notes
