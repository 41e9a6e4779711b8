"""Saved lab models are ordinary SinkFix models: ``load_model`` opens each variant, the post-load probe
passes, and SinkFix's captured statistics and logits equal the model's own plain (eager) forward."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

import sinkfix
from sinkfix.capture.attention import ATTN_NAME
from sinkfix.cli.main import main
from sinkfix.experiments.lab import checkpoint
from sinkfix.experiments.lab.architecture import lab_eager_attention
from sinkfix.experiments.lab.settings import LabSettings
from sinkfix.experiments.lab.tasks import backcopy_task
from sinkfix.experiments.lab.train import build_model
from sinkfix.experiments.lab.variants import VARIANTS

TEXT = "t1 t5 t9 t2 t7 t3 t1 t4 t6 t8 t2 t5"
RECORDED: list[torch.Tensor] = []


def _recording_eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """The lab model's own plain attention, keeping each layer's weights for the comparison."""
    output, weights = lab_eager_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    RECORDED.append(weights.detach().float())
    return output, weights


@pytest.fixture(scope="module")
def lab_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One random-weight lab model per variant (2 layers, 2 heads, width 16), saved as a model directory.
    Weights are scaled up so attention is far from uniform and the variants really differ."""
    root = tmp_path_factory.mktemp("lab_models")
    settings = LabSettings(task="backcopy", hidden=16, heads=2, layers=2, length=16, registers=2).resolved()
    out = {}
    for variant in VARIANTS:
        task = backcopy_task(16, 2 if variant == "registers" else 0, n_tokens=12, n_triggers=1)
        model = build_model(settings, variant, task, seed=1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "proj" in name and p.dim() == 2:
                    p.mul_(25.0)
                if name.endswith("sinks"):
                    p.copy_(torch.tensor([2.0, -1.0]))
        out[variant] = checkpoint.save_model(root / variant, model, task.vocab)
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_capture_equals_the_plain_forward(lab_dirs: dict[str, Path], variant: str) -> None:
    loaded = sinkfix.load_model(str(lab_dirs[variant]))  # the probe compares with eager already; check more
    assert loaded.lm_kind == "causal" and loaded.model.config.lab_variant == variant
    assert (loaded.output_projections is None) == (variant == "gated")  # the gate sits between A.V and W_O
    analysis = sinkfix.analyze(TEXT, loaded)
    ids = torch.tensor([loaded.tokenizer(TEXT)["input_ids"]])
    assert analysis.tokens[: 3 if variant == "registers" else 1] == (["<reg0>", "<reg1>", "<s>"] if variant == "registers"
                                                                      else ["<s>"])
    with torch.inference_mode():
        ours = loaded.model(input_ids=ids).logits
    AttentionInterface.register("lab_recording", _recording_eager)
    AttentionMaskInterface.register("lab_recording", eager_mask)  # else transformers builds no causal mask
    RECORDED.clear()
    loaded.model.set_attn_implementation("lab_recording")
    try:
        with torch.inference_mode():
            plain = loaded.model(input_ids=ids).logits
    finally:
        loaded.model.set_attn_implementation(ATTN_NAME)
    assert torch.equal(ours, plain)
    weights = torch.stack([w[0] for w in RECORDED])  # [L, H, T, T] as the model's own forward computed them
    torch.testing.assert_close(torch.as_tensor(analysis.att_received_head, dtype=torch.float32),
                               weights.mean(dim=-2), rtol=1e-5, atol=1e-6)
    if VARIANTS[variant].sink_logit is not None:  # the rest of each row went to the sink
        sink = 1.0 - weights.sum(dim=-1).mean(dim=-1)
        torch.testing.assert_close(torch.as_tensor(analysis.learned_sink_mass, dtype=torch.float32), sink,
                                   rtol=1e-5, atol=1e-6)
    if variant in ("sigmoid", "relu"):  # unnormalised rows: not a distribution, and SinkFix says what it saw
        assert not torch.allclose(weights.sum(dim=-1), torch.ones(()))


def test_sinkfix_analyze_opens_a_lab_model(lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["analyze", TEXT, "--model", str(lab_dirs["softpick"]), "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["token_list"][0] == "<s>" and len(data["token_list"]) == 13
