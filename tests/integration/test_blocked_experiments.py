"""evaluate, sts and the clean-forward statistics under query blocks: the same numbers as unblocked."""
import numpy as np
import pytest
import torch

import sinkfix
from sinkfix.capture.attention import blocking, observing
from sinkfix.cli.main import main
from sinkfix.experiments.evaluate import evaluate
from sinkfix.experiments.intervene import Intervention, stats_for
from sinkfix.experiments.sts import SentenceSet

TEXT = "the cat sat on the mat . the dog was in the sun , hello world !"
SENTENCES = ["A man is playing a harp.", "Three dogs run across a snowy field near the old barn.", "Hi."]


@pytest.fixture(scope="module")
def tiny_llama(tiny_model_dirs):
    return sinkfix.load_model(str(tiny_model_dirs["llama"]))


def _stats(loaded, ids, mask, rows):
    stats = stats_for(mask, loaded.n_layers, None)
    with torch.inference_mode(), blocking(rows), observing(stats):
        loaded.base(input_ids=ids, attention_mask=mask)
    return stats


def test_batch_stats_accumulate_blocks_with_padding(minilm):
    encoded = minilm.tokenizer(SENTENCES, padding=True, padding_side="right", return_tensors="pt")
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    whole, blocked = _stats(minilm, ids, mask, None), _stats(minilm, ids, mask, 3)
    torch.testing.assert_close(blocked.received, whole.received, atol=1e-6, rtol=0)
    for b, sentence in enumerate(SENTENCES):  # and each sequence equals analyze() alone
        alone = sinkfix.analyze(sentence, minilm)
        n = alone.n_tokens
        np.testing.assert_allclose(blocked.received[:, b, :, :n].numpy(), alone.att_received_head, atol=1e-5)
        np.testing.assert_allclose(blocked.value_norms[3][b, :n].numpy(), alone.value_norm_layer[3], rtol=1e-5)


def test_evaluate_under_query_blocks_equals_unblocked(tiny_llama):
    intervention = Intervention(target="first", beta=0.0)
    default = evaluate(tiny_llama, TEXT, intervention)
    with blocking(2):
        blocked = evaluate(tiny_llama, TEXT, intervention)
    assert blocked.delta_nll == pytest.approx(default.delta_nll, abs=1e-5)
    assert blocked.kl_mean == pytest.approx(default.kl_mean, abs=1e-5)
    assert blocked.cosine_mean == pytest.approx(default.cosine_mean, abs=1e-5)
    assert default.delta_nll != 0.0  # the intervention does something, so equality means something


def test_sts_embeddings_under_query_blocks_equal_unblocked(minilm):
    intervention = Intervention(target="tokens:2", beta=0.0)
    default = SentenceSet(minilm, SENTENCES).embed(intervention)[0]
    with blocking(3):
        sentences = SentenceSet(minilm, SENTENCES)
        blocked = sentences.embed(intervention)[0]
    np.testing.assert_allclose(blocked, default, atol=1e-5)
    np.testing.assert_allclose(sentences.baseline, SentenceSet(minilm, SENTENCES).baseline, atol=1e-5)


def test_every_model_command_takes_device_dtype_and_query_block():
    from sinkfix.cli.main import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in ("analyze", "batch", "evaluate", "sts", "calibrate"):
        options = commands[name]._option_string_actions
        assert {"--device", "--dtype", "--query-block"} <= set(options), name
    assert "--device" not in commands["runs"]._subparsers._group_actions[0].choices["list"]._option_string_actions


def test_cli_query_block_must_be_positive(capsys):
    assert main(["evaluate", "--text", "hello", "--query-block", "0", "--no-save"]) == 2
    assert "query_block must be" in capsys.readouterr().err
