"""SinkFix's attention function must equal eager attention bit for bit, for every architecture."""
import pytest
import torch

import sinkfix
from sinkfix.models import model_inputs

from ..tiny_models import ARCHITECTURES

TEXT = "hello world the cat sat on the mat ."


def _eager_twin(loaded: sinkfix.LoadedModel) -> torch.nn.Module:
    return type(loaded.model).from_pretrained(loaded.source, attn_implementation="eager", dtype=torch.float32).eval()


def _assert_bit_identical(loaded: sinkfix.LoadedModel, text: str) -> None:
    eager = _eager_twin(loaded)
    inputs = model_inputs(loaded.model, loaded.tokenizer(text, return_tensors="pt"))
    with torch.inference_mode():
        ours = loaded.model(**inputs, output_hidden_states=True)
        theirs = eager(**inputs, output_hidden_states=True)
    assert len(ours.hidden_states) == loaded.n_layers + 1
    for mine, ref in zip(ours.hidden_states, theirs.hidden_states):
        assert torch.equal(mine, ref)
    if loaded.lm_kind is not None:
        assert torch.equal(ours.logits, theirs.logits)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_random_weight_models_match_eager(arch, tiny_model_dirs):
    loaded = sinkfix.load_model(str(tiny_model_dirs[arch]))
    _assert_bit_identical(loaded, TEXT)


def test_loaded_facts_of_tiny_models(tiny_model_dirs):
    facts = {arch: sinkfix.load_model(str(tiny_model_dirs[arch])) for arch in ARCHITECTURES}
    assert {a: m.is_causal for a, m in facts.items()} == {
        "bert": False, "roberta": False, "distilbert": False, "gpt2": True, "llama": True, "qwen2": True,
    }
    assert facts["llama"].n_kv_heads == 2 and facts["llama"].n_heads == 4  # GQA
    assert facts["bert"].lm_kind == "masked" and facts["gpt2"].lm_kind == "causal"
    assert all(m.output_projections is not None for m in facts.values())


@pytest.mark.slow
def test_minilm_matches_eager(minilm):
    _assert_bit_identical(minilm, "Attention sinks soak up attention without adding much.")


@pytest.mark.slow
def test_smollm2_matches_eager(smollm2):
    # Causal masking must hold: the registered eager mask builder is what makes this pass.
    _assert_bit_identical(smollm2, "To be, or not to be, that is the question: whether 'tis nobler in the mind")
