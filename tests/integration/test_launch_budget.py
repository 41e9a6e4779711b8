"""Launch and synchronisation budgets of the fused path, counted on the CPU through Triton's interpreter.

Per forward pass with kernel="triton": exactly two kernel launches per attention layer (pass 1 and
pass 2), a small constant number of host synchronisations, and the same counts at T = 256 as at
T = 1024 and for a 2-layer model as for SmolLM2's 30 layers (random weights of its shape). On the
CPU a "synchronisation" is a call that would make the host wait if the tensors were on a GPU
(benchmarks/budget.py): an upper bound of the real count.
"""
from __future__ import annotations

import pytest

import sinkfix
from benchmarks import budget, shapes
from sinkfix.capture.kernels import interpreting

pytestmark = pytest.mark.skipif(not interpreting(), reason="the fused path runs on CPU tensors through the interpreter")

VOCAB = 512
SYNCS_PER_FORWARD = 12  # on the CPU an upper bound: see benchmarks/budget.py and docs/gpu.md
OPS_PER_LAYER = 16  # torch operators of the fused handler besides its two launches, per layer


@pytest.fixture(scope="module")
def smollm2_shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, sinkfix.LoadedModel]:
    """SmolLM2's attention (9 heads, 3 KV heads, head dim 64) with 2 and 30 layers; a narrow residual stream,
    MLP and vocabulary (what the kernels see is the same, the weights are 9x fewer)."""
    root = tmp_path_factory.mktemp("budget_models")
    small = dict(hidden_size=72, intermediate_size=64, vocab_size=VOCAB)
    return {layers: sinkfix.load_model(str(shapes.build(root / str(layers), "smollm2", 1024, num_hidden_layers=layers,
                                                        **small)))
            for layers in (2, 30)}


def _settings() -> sinkfix.AnalysisSettings:
    return sinkfix.AnalysisSettings(map_token_limit=0, kernel="triton")


def _count(model: sinkfix.LoadedModel, texts: list[str], batch_size: int | None = None) -> budget.Budget:
    with budget.counting() as counted:
        results = sinkfix.analyze_many(texts, model, _settings(), batch_size=batch_size)
    assert all(r.kernel == "triton" and r.kernel_reason is None for r in results)
    return counted


@pytest.mark.slow
def test_launches_and_syncs_do_not_grow_with_t_or_depth(smollm2_shapes):
    runs = {(layers, n): _count(smollm2_shapes[layers], [shapes.text(n, vocab=VOCAB)])
            for layers, n in ((2, 256), (2, 1024), (30, 256))}
    for (layers, n), counted in runs.items():
        assert counted.forwards == 1 and counted.layers == layers
        # Exactly the two passes per layer: nothing else is launched, nothing is launched twice.
        assert counted.launches == {"_row_stats_kernel": layers, "_column_sums_kernel": layers}, (layers, n)
        per = counted.per_forward()
        assert per["launches"] <= 2 * layers + 2 and per["syncs"] <= SYNCS_PER_FORWARD, (layers, n, counted.syncs)
        assert per["handler_ops_per_layer"] <= OPS_PER_LAYER, (layers, n, counted.handler_ops)
    syncs = {key: counted.syncs for key, counted in runs.items()}
    assert syncs[(2, 256)] == syncs[(2, 1024)] == syncs[(30, 256)]  # neither T nor depth adds one
    # Per layer the same operators (those run once per forward, such as the scratch buffers' setup, aside).
    ops = {key: {op: n / key[0] for op, n in counted.handler_ops.items() if n != counted.forwards}
           for key, counted in runs.items()}
    assert ops[(2, 256)] == ops[(2, 1024)] == ops[(30, 256)]


@pytest.mark.slow
def test_batches_count_per_forward_as_one_text_does(smollm2_shapes):
    """analyze_many: three padded texts in two forwards (batches of 2 and 1), the same budget per forward."""
    model = smollm2_shapes[2]
    alone = _count(model, [shapes.text(200, vocab=VOCAB)])
    batched = _count(model, [shapes.text(n, seed=n, vocab=VOCAB) for n in (120, 200, 90)], batch_size=2)
    assert batched.forwards == 2 and sum(batched.launches.values()) == 2 * 2 * 2
    assert batched.per_forward()["syncs"] <= SYNCS_PER_FORWARD
    assert sum(batched.syncs.values()) <= 2 * sum(alone.syncs.values())


def test_the_counter_sees_each_kind_of_sync():
    """The counting mode itself: each call that would wait for a GPU is counted, others are not."""
    import torch

    from sinkfix.analysis import pipeline

    with budget.counting() as counted:
        t = torch.arange(4.0)
        t.sum().item(), t.tolist(), bool(t.any()), int(t[0]), t.nonzero(), t.cpu(), t.to("cpu"), torch.equal(t, t)
        t.to("cpu", non_blocking=True), t + 1, torch.tensor([1, 2], device="cpu")
        torch.cuda.synchronize  # noqa: B018 - patched, not called (no CUDA here)
    expected = {"item": 1, "tolist": 1, "bool": 1, "int": 1, "nonzero": 1, "cpu": 1, "to_cpu": 1, "equal": 1,
                "upload": 1}
    assert dict(counted.syncs_outside) == expected and not counted.syncs and counted.forwards == 0
    assert pipeline._forward.__name__ == "_forward"  # restored after the context
