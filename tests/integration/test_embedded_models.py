"""Real weights: analysis numbers against an independent eager computation."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import sinkfix
from sinkfix.models import model_inputs

from ..conftest import SEED_TEXT

pytestmark = pytest.mark.slow

SHAKESPEARE = (
    "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. First Citizen: You are all "
    "resolved rather to die than to famish? All: Resolved. resolved."
)


def _eager(loaded: sinkfix.LoadedModel, text: str):
    """A plain eager forward on a fresh copy of the weights: attentions and hidden states."""
    eager = type(loaded.model).from_pretrained(loaded.source, attn_implementation="eager", dtype=torch.float32).eval()
    inputs = model_inputs(loaded.model, loaded.tokenizer(text, return_tensors="pt"))
    with torch.inference_mode():
        out = eager.base_model(**inputs, output_attentions=True, output_hidden_states=True)
    return eager, out


def _eager_att_received(out) -> np.ndarray:
    a_bar = torch.stack(out.attentions)[:, 0].mean(dim=(0, 1))  # mean over layers and heads: [T, T]
    return a_bar.mean(dim=0).numpy()  # (1/T) sum_i A-bar[i, j]


def test_minilm_att_received_and_value_norms_match_eager(minilm):
    result = sinkfix.analyze(SEED_TEXT, minilm)
    eager, out = _eager(minilm, SEED_TEXT)
    np.testing.assert_allclose(result.att_received, _eager_att_received(out), atol=1e-5, rtol=0)
    assert result.att_received.sum() == pytest.approx(1.0, abs=1e-5)
    layer = result.settings.layer
    assert layer == minilm.n_layers // 2 == 3
    value_layer = eager.base_model.encoder.layer[layer].attention.self.value
    with torch.inference_mode():
        norms = value_layer(out.hidden_states[layer])[0].norm(dim=-1)  # ||W_v h + b_v||
    np.testing.assert_allclose(result.value_norm, (norms / norms.max()).numpy(), atol=1e-5, rtol=0)
    # the same for a non-default layer
    other = sinkfix.analyze(SEED_TEXT, minilm, sinkfix.AnalysisSettings(layer=0))
    with torch.inference_mode():
        norms0 = eager.base_model.encoder.layer[0].attention.self.value(out.hidden_states[0])[0].norm(dim=-1)
    np.testing.assert_allclose(other.value_norm, (norms0 / norms0.max()).numpy(), atol=1e-5, rtol=0)


def test_minilm_sink_is_cls(minilm):
    result = sinkfix.analyze(SEED_TEXT, minilm)
    assert result.tokens[0] == "[CLS]" and result.tokens[-1] == "[SEP]"
    assert int(result.att_received.argmax()) == 0
    assert result.labels[0] == "beneficial"


def test_smollm2_att_received_matches_eager_and_first_token_sinks(smollm2):
    result = sinkfix.analyze(SHAKESPEARE, smollm2)
    _, out = _eager(smollm2, SHAKESPEARE)
    np.testing.assert_allclose(result.att_received, _eager_att_received(out), atol=1e-5, rtol=0)
    # alpha is the visible-query mean: recompute it from the eager maps
    maps = torch.stack(out.attentions)[:, 0]  # [L, H, T, T]
    n = maps.shape[-1]
    alpha = maps.sum(dim=-2) / torch.arange(n, 0, -1)
    np.testing.assert_allclose(result.alpha, alpha.numpy(), atol=1e-5, rtol=0)
    # entropy (computed from the scores inside the observer) against -sum p ln p on the eager maps
    entropy = -torch.special.xlogy(maps, maps).sum(dim=-1).mean(dim=-1)
    np.testing.assert_allclose(result.entropy, entropy.numpy(), atol=1e-4, rtol=0)
    # the first token is the sink: most received attention, and it sinks in most heads
    assert int(result.att_received.argmax()) == 0
    assert result.sink_rate[0] > 0.5
    assert result.sink_rate[0] == pytest.approx(float((alpha[:, :, 0] > 0.3).float().mean()))


def test_seed_cli_json_matches_eager(minilm):
    completed = subprocess.run(
        [sys.executable, "-m", "sinkfix", "analyze", SEED_TEXT, "--model", "minilm", "--no-save", "--json", "-"],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    seed = json.loads(completed.stdout)  # stdout holds the JSON and nothing else
    assert set(seed) >= {"token_list", "classifications", "att_received_scores", "value_norms", "corrected_att_scores"}
    _, out = _eager(minilm, SEED_TEXT)
    np.testing.assert_allclose(seed["att_received_scores"], _eager_att_received(out), atol=1e-5, rtol=0)
    corrected = np.array(seed["corrected_att_scores"])
    assert corrected.shape == (6, 12, len(seed["token_list"]), len(seed["token_list"]))
    np.testing.assert_allclose(corrected.sum(-1), 1.0, atol=1e-5)
    # nothing is detrimental at the default thresholds, so the correction is the identity
    if "detrimental" not in seed["classifications"]:
        np.testing.assert_allclose(corrected, torch.stack(out.attentions)[:, 0].numpy(), atol=1e-6)
