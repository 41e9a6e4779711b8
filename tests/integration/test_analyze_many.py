"""Batched analysis equals one-by-one analysis for every text; query blocks change no number."""
import numpy as np
import pytest

import sinkfix
from sinkfix.analysis.pipeline import plan_batches

TEXTS = [
    "the cat sat on the mat . hello world",
    "a dog",
    "the sun is hello and the dog was in it , the cat sat on a mat !",
    "hello world .",
    "it was the sun",
]
ENGLISH = [
    "The cat sat on the mat.",
    "Attention sinks soak up attention without contributing much to the output of a layer.",
    "Hi!",
    "A much longer sentence, with commas, clauses and several words, so that padding is plentiful here.",
    "Short one.",
]
ARRAYS = ("att_received", "att_received_layer", "att_received_head", "alpha", "sink_rate", "entropy",
          "value_norm", "value_norm_layer", "value_norm_head", "contribution", "maps", "corrected_maps")


@pytest.fixture(scope="module")
def tiny_llama(tiny_model_dirs):
    return sinkfix.load_model(str(tiny_model_dirs["llama"]))


@pytest.fixture(scope="module")
def tiny_gpt2(tiny_model_dirs):
    return sinkfix.load_model(str(tiny_model_dirs["gpt2"]))


def assert_same(batched: sinkfix.Analysis, alone: sinkfix.Analysis, atol: float = 1e-5) -> None:
    assert batched.tokens == alone.tokens and batched.token_ids == alone.token_ids
    assert batched.labels == alone.labels and batched.sink_indices == alone.sink_indices
    assert batched.offsets == alone.offsets and batched.warnings == alone.warnings
    for name in ARRAYS:
        a, b = getattr(batched, name), getattr(alone, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.shape == b.shape, name
            # atol on the array's scale, as the probe measures: raw value norms reach ~30, where
            # 1e-5 absolute is a few float32 ulps, and probabilities (<= 1) keep 1e-5 absolute.
            scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
            np.testing.assert_allclose(a, b, rtol=0, atol=atol * scale, err_msg=name)


@pytest.mark.parametrize("fixture,texts", [("tiny_llama", TEXTS), ("tiny_gpt2", TEXTS), ("minilm", ENGLISH)])
def test_batched_equals_one_by_one(fixture, texts, request):
    loaded = request.getfixturevalue(fixture)
    alone = [sinkfix.analyze(text, loaded) for text in texts]
    assert len({a.n_tokens for a in alone}) > 2  # unequal lengths, so there is padding
    batched = sinkfix.analyze_many(texts, loaded, batch_size=4)
    assert [b.text for b in batched] == texts  # input order, although batches run sorted by length
    assert max(b.timings["batch_size"] for b in batched) == 4
    for b, a in zip(batched, alone):
        assert_same(b, a)


def test_padding_side_of_the_tokenizer_does_not_matter(tiny_llama):
    alone = [sinkfix.analyze(text, tiny_llama) for text in TEXTS]
    tokenizer = tiny_llama.tokenizer
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batched = sinkfix.analyze_many(TEXTS, tiny_llama, batch_size=len(TEXTS))
    finally:
        tokenizer.padding_side = side
    for b, a in zip(batched, alone):
        assert_same(b, a)


def test_batches_with_maps_and_without(tiny_llama):
    settings = sinkfix.AnalysisSettings(map_token_limit=6)
    batched = sinkfix.analyze_many(TEXTS, tiny_llama, settings, batch_size=8)
    for text, b in zip(TEXTS, batched):
        alone = sinkfix.analyze(text, tiny_llama, settings)
        assert (b.maps is None) == (b.n_tokens > 6)
        assert_same(b, alone)


def test_progress_counts_layers(tiny_llama):
    seen = []
    sinkfix.analyze_many(TEXTS, tiny_llama, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    n_batches, layers = 3, tiny_llama.n_layers
    assert seen[-1] == (n_batches * layers, n_batches * layers)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    single = []
    sinkfix.analyze(TEXTS[0], tiny_llama, progress=lambda done, total: single.append((done, total)))
    assert single == [(0, layers)] + [(i, layers) for i in range(1, layers + 1)]


def test_plan_batches_sorts_and_respects_limits():
    lengths = [50, 3, 400, 7, 260, 5]
    batches = plan_batches(lengths, batch_size=2, map_token_limit=256, token_budget=600)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches == [[1, 5], [3, 0], [4], [2]]  # 260 and 400 together would exceed the budget


def test_bad_batch_size_is_a_settings_error(tiny_llama):
    with pytest.raises(sinkfix.SettingsError):
        sinkfix.analyze_many(TEXTS, tiny_llama, batch_size=0)
    with pytest.raises(sinkfix.InputError):
        sinkfix.analyze_many(["fine", "  "], tiny_llama)


@pytest.mark.parametrize("fixture", ["tiny_llama", "minilm", "smollm2"])
def test_query_block_of_three_equals_default(fixture, request):
    loaded = request.getfixturevalue(fixture)
    text = ENGLISH[3] if fixture != "tiny_llama" else TEXTS[2]
    default = sinkfix.analyze(text, loaded)
    blocked = sinkfix.analyze(text, loaded, sinkfix.AnalysisSettings(query_block=3))
    assert default.n_tokens > 6  # several blocks, the last one partial
    assert_same(blocked, default)


def test_query_blocks_with_batches(tiny_llama):
    settings = sinkfix.AnalysisSettings(query_block=2)
    batched = sinkfix.analyze_many(TEXTS, tiny_llama, settings, batch_size=3)
    for text, b in zip(TEXTS, batched):
        assert_same(b, sinkfix.analyze(text, tiny_llama))
