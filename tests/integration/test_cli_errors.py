"""Every user error: one plain line on stderr, exit code 2, no traceback."""
import os
import subprocess
import sys

import pytest

import transformers as tf

from ..tiny_models import _tokenizer


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sinkfix", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


def _assert_user_error(completed: subprocess.CompletedProcess, fragment: str) -> None:
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("sinkfix: error:")]
    assert len(errors) == 1, completed.stderr
    assert fragment in errors[0]
    assert completed.stdout == ""


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_or_blank_text(text):
    _assert_user_error(_run("analyze", text, "--model", "minilm", "--no-save"), "text is empty")


@pytest.mark.parametrize(
    ("flag", "value", "fragment"),
    [("--tau-att", "1.5", "tau_att"), ("--tau-norm", "-0.1", "tau_norm"), ("--beta", "2", "beta"),
     ("--beta", "abc", "--beta"), ("--epsilon", "7", "epsilon")],
)
def test_thresholds_and_beta_out_of_range(flag, value, fragment):
    _assert_user_error(_run("analyze", "some text", flag, value, "--no-save"), fragment)


def test_layer_out_of_range():
    _assert_user_error(_run("analyze", "some text", "--layer", "6", "--no-save"), "layers 0..5")


def test_unknown_hub_id_offline_names_embedded_models():
    # No HF_HUB_OFFLINE here: the hub probe itself must fail fast on a machine without network.
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    completed = subprocess.run(
        [sys.executable, "-m", "sinkfix", "analyze", "hi", "--model", "nobody/no-such-model-xyz", "--no-save"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    _assert_user_error(completed, "minilm, smollm2-135m")


def test_missing_local_directory(tmp_path):
    _assert_user_error(_run("analyze", "hi", "--model", str(tmp_path / "absent"), "--no-save"), "not found")


def test_directory_without_config(tmp_path):
    _assert_user_error(_run("analyze", "hi", "--model", str(tmp_path), "--no-save"), "config.json")


def test_architecture_without_attention(tmp_path):
    target = tmp_path / "mamba"
    tf.MambaModel(tf.MambaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, state_size=4)).save_pretrained(target)
    _tokenizer(False).save_pretrained(target)
    _assert_user_error(_run("analyze", "hello world", "--model", str(target), "--no-save"), "SinkFix supports")


def test_encoder_decoder_is_refused(tmp_path):
    target = tmp_path / "t5"
    tf.T5Model(tf.T5Config(vocab_size=64, d_model=16, d_kv=4, num_heads=2, num_layers=1, d_ff=16)).save_pretrained(target)
    _tokenizer(False).save_pretrained(target)
    _assert_user_error(_run("analyze", "hello world", "--model", str(target), "--no-save"), "SinkFix supports")


def test_truncation_warns_on_stderr(tiny_model_dirs):
    long_text = " ".join(["the cat sat on the mat ."] * 40)  # ~280 words, tiny models allow 128 tokens
    completed = _run("analyze", long_text, "--model", str(tiny_model_dirs["bert"]), "--no-save", "--json", "-")
    assert completed.returncode == 0, completed.stderr
    assert "warning: text truncated" in completed.stderr
