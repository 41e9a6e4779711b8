"""KV-cache eviction against independent computations, on a tiny random Llama with GQA (fast).

- every scorer equals its kvpress-style dense reference computed from the full T x T maps;
- ratio 0 reproduces the dense cache's logits bit for bit;
- for every press, the pruned-cache answer logits equal one full forward in which the question and
  answer queries are masked from the evicted keys per (layer, KV head), within 1e-5 (float32),
  PyramidKV's different per-layer lengths included;
- protected tokens are always kept; n_kept is exact per layer;
- greedy decoding agrees with teacher-forced scoring; the fused path's statistics equal the blocked ones;
- the prefill makes no T x T tensor.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sinkfix.experiments.evict import capture, compress, decode, presses
from sinkfix.experiments.evict.presses import h2o, knorm, pyramidkv, random_press, snapkv, streaming, tova
from sinkfix.experiments.evict.protect import Protection

from ..evict_reference import dense_maps, masked_answer_logits, tiny_llama

T = 300  # > 256: the prefill runs in blocks of 128 query rows, and SnapKV's window straddles two of them
QUESTION, ANSWER = [10, 11, 12, 13], [20, 21, 22, 23, 24]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return tiny_llama(tmp_path_factory.mktemp("evict_tiny"))


@pytest.fixture(scope="module")
def context() -> list[int]:
    return torch.randint(7, 60, (T,), generator=torch.Generator().manual_seed(1)).tolist()


@pytest.fixture(scope="module")
def pre(tiny, context) -> capture.Prefill:
    return capture.prefill(tiny, context)


@pytest.fixture(scope="module")
def maps(tiny, context) -> tuple[torch.Tensor, torch.Tensor]:
    return dense_maps(tiny, context)


def test_scorers_equal_their_dense_references(pre, maps) -> None:
    attentions, keys = maps
    for layer in range(pre.n_layers):
        a, k, stats = attentions[layer][None], keys[layer][None], pre.layer(layer)
        expected = {
            "h2o": h2o.reference(a, k), "tova": tova.reference(a, k), "snapkv": snapkv.reference(a, k),
            "pyramidkv": snapkv.reference(a, k), "knorm": knorm.reference(a, k),
            "random": random_press.reference(a, k, seed=0, layer=layer),
        }
        for name, reference in expected.items():
            got = presses.make(name).score(stats)
            torch.testing.assert_close(got, reference[0], rtol=1e-5, atol=1e-6, msg=f"{name}, layer {layer}")
    # The statistics themselves: alpha is the visible-query mean of the dense maps.
    alpha = attentions.sum(dim=2) / torch.arange(T, 0, -1)
    torch.testing.assert_close(pre.alpha, alpha, rtol=1e-5, atol=1e-6)


def test_streaming_with_first_n_keeps_kvpress_streamingllm_set(pre, maps) -> None:
    _, keys = maps
    for ratio, sinks in ((0.5, 4), (0.75, 4), (0.5, 0), (0.9, 8)):
        budget = presses.n_kept(T, ratio)
        expected = streaming.reference(keys[0][None], ratio, sinks)[0].topk(budget, dim=-1).indices.sort().values
        protect = f"first:{sinks}" if sinks else "none"
        kept = compress.compress(pre, "streaming", ratio, protect)
        assert torch.equal(kept.index[0], expected), (ratio, sinks)


def test_ratio_zero_is_the_dense_cache_bit_for_bit(tiny, pre, context) -> None:
    dense = compress.compress(pre, "streaming", 0.0)
    for name in presses.PRESSES:
        kept = compress.compress(pre, name, 0.0, "first:4")
        assert kept.n_kept == [T] * pre.n_layers
        got = decode.answer_logits(tiny, pre, [kept], QUESTION, ANSWER)
        assert torch.equal(got, decode.answer_logits(tiny, pre, [dense], QUESTION, ANSWER))
    full = masked_answer_logits(tiny, context, QUESTION, ANSWER, torch.ones(pre.n_layers, 2, T, dtype=torch.bool))
    torch.testing.assert_close(got[0], full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("protect", ["none", "first:4", "detected"])
def test_pruned_answers_equal_a_masked_full_forward_for_every_press(tiny, pre, context, protect) -> None:
    protection = Protection.parse(protect, epsilon=float(pre.alpha.quantile(0.99)))  # the tiny model has weak sinks
    chosen = [compress.compress(pre, name, 0.5, protection) for name in presses.PRESSES]
    for batch in decode.groups(chosen):  # batched as a sweep batches them
        logits = decode.answer_logits(tiny, pre, [chosen[i] for i in batch], QUESTION, ANSWER)
        for row, i in enumerate(batch):
            expected = masked_answer_logits(tiny, context, QUESTION, ANSWER, chosen[i].mask())
            torch.testing.assert_close(logits[row], expected, rtol=0, atol=1e-5, msg=chosen[i].press)


def test_an_empty_question_reads_the_first_answer_token_from_the_prefill(tiny, pre, context) -> None:
    kept = compress.compress(pre, "pyramidkv", 0.75)
    got = decode.answer_logits(tiny, pre, [kept], [], ANSWER)[0]
    torch.testing.assert_close(got, masked_answer_logits(tiny, context, [], ANSWER, kept.mask()), rtol=0, atol=1e-5)


def test_protected_tokens_are_kept_and_budgets_are_exact(pre) -> None:
    detected = Protection.parse("detected", epsilon=float(pre.alpha.quantile(0.98)))
    for name in presses.PRESSES:
        press = presses.make(name)
        for ratio in (0.5, 0.75, 0.95):
            for protection in (Protection.parse("first:4"), detected):
                kept = compress.compress(pre, press, ratio, protection)
                assert kept.n_kept == [press.budget(T, ratio, layer, pre.n_layers) for layer in range(pre.n_layers)]
                mask = kept.mask()
                for layer, protected in enumerate(kept.protected):
                    for head in range(protected.shape[0]):
                        wanted = protected[head]
                        if int(wanted.sum()) <= kept.n_kept[layer]:
                            assert bool(mask[layer, head][wanted].all()), (name, ratio, protection.name, layer, head)


def test_budgets_follow_kvpress() -> None:
    press = presses.make("h2o")
    assert [press.budget(1000, r, 0, 30) for r in (0.0, 0.5, 0.75, 0.999)] == [1000, 500, 250, 1]
    pyramid = presses.make("pyramidkv")
    # T = 1024, ratio 0.5, 30 layers: the pyramid runs from T - w = 960 down to w = 64, mean 512.
    budgets = [pyramid.budget(1024, 0.5, layer, 30) for layer in range(30)]
    assert budgets[0] == 960 and budgets[-1] == 64 and abs(sum(budgets) / 30 - 512) < 1
    # ratio 0.75: the smallest layer would fall under the window, so kvpress falls back to SnapKV's budget.
    assert {pyramid.budget(2048, 0.75, layer, 30) for layer in range(30)} == {512}
    assert pyramidkv.layer_budget(300, 0.5, 1, 3) == 150


def test_greedy_decoding_agrees_with_teacher_forcing(tiny, pre) -> None:
    chosen = [compress.compress(pre, name, 0.5, "first:4") for name in ("snapkv", "knorm", "random")]
    made = decode.generate(tiny, pre, chosen, QUESTION, 6)
    for kept, tokens in zip(chosen, made):
        right = decode.answer_logits(tiny, pre, [kept], QUESTION, tokens)[0]
        assert decode.outcome(right, tokens)[0]  # what greedy decoded, teacher forcing scores as exact
        wrong = tokens[:-1] + [(tokens[-1] + 1) % 64]
        assert not decode.outcome(decode.answer_logits(tiny, pre, [kept], QUESTION, wrong)[0], wrong)[0]


def test_the_fused_path_gives_the_blocked_statistics(tiny, pre, context) -> None:
    fused = capture.prefill(tiny, context, kernel="triton")  # Triton's interpreter on the CPU (conftest)
    assert fused.kernel == "triton"
    for name in ("alpha", "window", "last"):
        torch.testing.assert_close(getattr(fused, name), getattr(pre, name), rtol=1e-4, atol=1e-6)


class _Shapes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor) and tensor.dim() >= 2:
                self.largest = max(self.largest, sorted(tensor.shape)[-2])  # the second-largest dimension
        return out


def test_the_prefill_makes_no_t_by_t_tensor(tiny, context) -> None:
    watch = _Shapes()
    with watch:
        capture.prefill(tiny, context)
    assert watch.largest < T  # blocks are 128 rows x T keys; a T x T mask or map would reach T
