"""The fused Triton path end to end, through Triton's interpreter (TRITON_INTERPRET=1, tests/conftest.py).

Each analysis with ``kernel="triton"`` is compared with the blocked path's, array by array: the
largest difference is at most 1e-5 of the array's largest value (float32). The structured masks
the fused path reads are compared with the eager masks they replace, layer by layer.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json

import numpy as np
import pytest
import torch

import sinkfix
from sinkfix.capture import attention as capture
from sinkfix.capture import fast_path, masks
from sinkfix.capture.kernels import interpreting
from sinkfix.capture.observers import SinkObserver
from sinkfix.cli.main import main
from sinkfix.errors import SinkFixError
from sinkfix.models import model_inputs
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store
from tests import conformance

pytestmark = pytest.mark.skipif(not interpreting(), reason="the fused path runs on CPU tensors through the interpreter")

FIELDS = ("att_received", "att_received_head", "alpha", "entropy", "value_norm_head", "contribution",
          "learned_sink_mass")
TEXTS = ["the cat sat on the mat . hello world", "a dog is in the sun", "hello world , it was a long text and the sun is on it !"]
PROSE = ("Attention sinks are tokens that receive a large share of attention without carrying much meaning. "
         "The first token of a causal model is the usual example, and punctuation often joins it. ")


def _settings(kernel: str, **extra: object) -> sinkfix.AnalysisSettings:
    return sinkfix.AnalysisSettings(map_token_limit=0, kernel=kernel, **extra)


def _assert_equal_within(fused: sinkfix.Analysis, blocked: sinkfix.Analysis, relative: float = 1e-5) -> None:
    assert fused.kernel == "triton" and fused.kernel_reason is None and blocked.kernel == "blocked"
    assert fused.token_ids == blocked.token_ids
    for name in FIELDS:
        ours, theirs = getattr(fused, name), getattr(blocked, name)
        assert (ours is None) == (theirs is None), name
        if theirs is not None:
            worst = float(np.abs(ours - theirs).max())
            assert worst <= relative * float(np.abs(theirs).max()), f"{name}: {worst:.3g}"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, sinkfix.LoadedModel]:
    """Tiny Gemma 2 (soft-capping, sliding and full layers), gpt-oss (learned sinks), Mistral (window 4)."""
    root = tmp_path_factory.mktemp("fused_zoo")
    built = {}
    for model_type in ("gemma2", "gpt_oss", "mistral"):
        conformance.build(conformance.by_type(model_type), root / model_type)
        built[model_type] = sinkfix.load_model(str(root / model_type))
    return built


@pytest.mark.slow
def test_smollm2_beyond_one_block(smollm2):
    """T = 260 > SINGLE_BLOCK_QUERIES, and 64-row blocks, so the blocked side really is blocked."""
    text = PROSE * 8
    blocked = sinkfix.analyze(text, smollm2, _settings("blocked", max_tokens=260, query_block=64))
    fused = sinkfix.analyze(text, smollm2, _settings("triton", max_tokens=260))
    assert blocked.n_tokens == 260 > capture.SINGLE_BLOCK_QUERIES
    _assert_equal_within(fused, blocked)


@pytest.mark.slow
def test_padded_minilm_batch(minilm):
    blocked = sinkfix.analyze_many(TEXTS[:2], minilm, _settings("blocked"))
    fused = sinkfix.analyze_many(TEXTS[:2], minilm, _settings("triton"))
    assert len({a.n_tokens for a in fused}) == 2  # two lengths in one padded batch
    for ours, theirs in zip(fused, blocked):
        _assert_equal_within(ours, theirs)


@pytest.mark.parametrize("model_type", ("gemma2", "gpt_oss", "mistral"))
def test_soft_capping_learned_sinks_and_sliding_windows(zoo, model_type):
    loaded = zoo[model_type]
    blocked = sinkfix.analyze_many(TEXTS, loaded, _settings("blocked"))
    fused = sinkfix.analyze_many(TEXTS, loaded, _settings("triton"))
    for ours, theirs in zip(fused, blocked):
        _assert_equal_within(ours, theirs)
    if model_type == "gpt_oss":
        assert fused[0].mean_learned_sink_mass > 0.05  # the sink logits really matter


@pytest.mark.parametrize("model_type", ("gemma2", "gpt_oss", "mistral"))
def test_layer_outputs_stay_within_rounding_of_eager(zoo, model_type):
    """The fused forward's hidden states (each layer's output from pass 1) against SinkFix's blocked
    forward, which is eager attention bit for bit."""
    loaded = zoo[model_type]
    fields = loaded.tokenizer(TEXTS[0], return_tensors="pt")
    inputs = model_inputs(loaded.model, dict(fields))
    n = inputs["input_ids"].shape[1]
    with torch.inference_mode():
        eager = loaded.base(**inputs)[0]
        with fast_path.fused(SinkObserver(False, [n]), [n], forced=True):
            fused = loaded.base(**inputs)[0]
    assert float((fused - eager).abs().max()) <= 1e-5 * float(eager.abs().max())


def _masks_seen(loaded: sinkfix.LoadedModel, texts: list[str], structured: bool) -> tuple[dict, list[int]]:
    """The mask each layer's attention receives, with or without the fused path's structured masks."""
    from transformers import AttentionInterface

    fields = loaded.tokenizer(texts, return_tensors="pt", padding=True)
    inputs = model_inputs(loaded.model, dict(fields))
    lengths = fields["attention_mask"].sum(dim=1).tolist()
    seen: dict[int, object] = {}

    def recorder(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        seen[module.layer_idx] = attention_mask
        if isinstance(attention_mask, masks.StructuredMask):
            attention_mask = attention_mask.materialise()
        return capture.sinkfix_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)

    AttentionInterface.register(capture.ATTN_NAME, recorder)
    try:
        with torch.inference_mode(), (masks.structured(lengths) if structured else contextlib.nullcontext()):
            loaded.base(**inputs)
    finally:
        AttentionInterface.register(capture.ATTN_NAME, capture.sinkfix_attention)
    return seen, lengths


@pytest.mark.parametrize("which", ("smollm2", "minilm", "mistral", "gemma2"))
def test_structured_masks_equal_the_eager_masks(which, zoo, request):
    """Causal (SmolLM2), bidirectional with padding (MiniLM), a window of 4 (Mistral), and Gemma 2's
    alternating sliding and full layers: the band and lengths rebuild eager's [B, 1, T, T] exactly."""
    loaded = request.getfixturevalue(which) if which in ("smollm2", "minilm") else zoo[which]
    texts = TEXTS if which == "minilm" else TEXTS[:1]
    assert loaded.tokenizer.padding_side == "right"  # the pipeline right-pads too
    eager, _ = _masks_seen(loaded, texts, structured=False)
    structured, lengths = _masks_seen(loaded, texts, structured=True)
    assert sorted(eager) == sorted(structured) == list(range(loaded.n_layers))
    windows = set()
    for layer, mask in structured.items():
        assert isinstance(mask, masks.StructuredMask), layer
        assert torch.equal(mask.materialise(), eager[layer]), layer
        assert mask.lengths.tolist() == lengths
        windows.add((mask.left, mask.right))
    n = max(lengths)
    expected = {"smollm2": {(n - 1, 0)}, "minilm": {(n - 1, n - 1)}, "mistral": {(3, 0)}, "gemma2": {(3, 0), (n - 1, 0)}}
    assert windows == expected[which]


def test_auto_on_the_cpu_runs_blocked(zoo):
    analysis = sinkfix.analyze(TEXTS[0], zoo["mistral"], _settings("auto"))
    assert analysis.kernel == "blocked" and analysis.kernel_reason is None


def test_auto_on_cuda_names_what_it_cannot_serve():
    choice = fast_path.choose("auto", torch.device("cuda"), keep_maps=True)
    assert choice.kernel == "blocked" and "maps" in choice.reason
    with capture.intervening(object()):
        choice = fast_path.choose("auto", torch.device("cuda"), keep_maps=False)
    assert choice.kernel == "blocked" and "intervention" in choice.reason


def test_forced_triton_says_why_in_one_line(zoo):
    loaded = zoo["mistral"]
    with pytest.raises(fast_path.KernelUnsupportedError, match="maps") as caught:
        sinkfix.analyze(TEXTS[0], loaded, sinkfix.AnalysisSettings(kernel="triton"))  # map_token_limit 256 keeps maps
    assert "\n" not in str(caught.value) and isinstance(caught.value, SinkFixError)
    with capture.intervening(object()), pytest.raises(fast_path.KernelUnsupportedError, match="intervention"):
        sinkfix.analyze(TEXTS[0], loaded, _settings("triton"))


def test_a_case_found_inside_the_forward_reruns_blocked_and_says_why(zoo, monkeypatch):
    """Under auto, a mask the builder cannot structure is met mid-forward: the batch runs again blocked."""
    loaded = zoo["gemma2"]
    expected = sinkfix.analyze_many(TEXTS, loaded, _settings("blocked"))
    monkeypatch.setattr(fast_path, "choose", lambda kernel, device, keep_maps: fast_path.Choice("triton"))
    monkeypatch.setattr(masks, "band_of", lambda mask_function, n: None)
    rerun = sinkfix.analyze_many(TEXTS, loaded, _settings("auto"))
    for ours, theirs in zip(rerun, expected):
        assert ours.kernel == "blocked" and "attention mask" in ours.kernel_reason
        assert np.array_equal(ours.att_received_head, theirs.att_received_head)
    with pytest.raises(fast_path.KernelUnsupportedError, match="attention mask"):
        sinkfix.analyze(TEXTS[0], loaded, _settings("triton"))


def test_a_failing_kernel_under_auto_reruns_blocked_and_records_the_error(zoo, monkeypatch):
    loaded = zoo["mistral"]
    monkeypatch.setattr(fast_path, "choose", lambda kernel, device, keep_maps: fast_path.Choice("triton"))

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setattr("sinkfix.capture.kernels.row_stats.plan", broken)
    analysis = sinkfix.analyze(TEXTS[0], loaded, _settings("auto"))
    assert analysis.kernel == "blocked" and "RuntimeError: no kernel image" in analysis.kernel_reason
    with pytest.raises(RuntimeError, match="no kernel image"):
        sinkfix.analyze(TEXTS[0], loaded, _settings("triton"))


def test_the_kernel_is_stored_with_the_run_and_shown_by_the_cli(zoo, tmp_path, capsys):
    loaded = zoo["mistral"]
    store = Store(tmp_path / "runs.db")
    fused = sinkfix.analyze(TEXTS[0], loaded, _settings("triton"))
    fell_back = sinkfix.analyze(TEXTS[0], loaded, _settings("blocked"))
    fell_back = dataclasses.replace(fell_back, kernel_reason="a reason")
    for analysis in (fused, fell_back):
        again = store.get(store.save(analysis, viewer=LOCAL), viewer=LOCAL)
        assert (again.kernel, again.kernel_reason) == (analysis.kernel, analysis.kernel_reason)
    model = str(loaded.source)
    code = main(["analyze", TEXTS[0], "--model", model, "--no-save", "--map-limit", "0", "--kernel", "triton",
                 "--json", "-"])
    printed = capsys.readouterr()
    assert code == 0 and "kernel: triton" in printed.err and json.loads(printed.out)["kernel"] == "triton"
    code = main(["analyze", TEXTS[0], "--model", model, "--no-save", "--kernel", "triton"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sinkfix: error:")]
    assert code == 2 and len(errors) == 1 and "maps" in errors[0]


@pytest.mark.slow
def test_the_api_body_takes_kernel_and_the_response_names_it(minilm, monkeypatch):
    from fastapi.testclient import TestClient

    from sinkfix import api, models

    real = models.load_model
    monkeypatch.setattr(models.loading, "load_model",
                        lambda name, progress=None, **kw: minilm if name == "minilm" else real(name, progress, **kw))
    api.reset()
    try:
        client = TestClient(api.app)
        body = {"model_name": "minilm", "text": TEXTS[1], "map_token_limit": 0}
        fused = client.post("/api/analyze", json={**body, "kernel": "triton"}).json()
        assert (fused["kernel"], fused["kernel_reason"]) == ("triton", None)
        assert client.post("/api/analyze", json={**body, "kernel": "auto"}).json()["cached"] is True  # not in the key
        refused = client.post("/api/analyze", json={**body, "kernel": "triton", "map_token_limit": 256})
        assert refused.status_code == 422 and "maps" in refused.json()["detail"]
        assert client.post("/api/analyze", json={**body, "kernel": "cuda"}).status_code == 422
    finally:
        api.reset()
