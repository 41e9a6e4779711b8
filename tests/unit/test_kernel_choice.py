"""Which kernel an analysis runs: settings, the choice before a forward, and --kernel on the CLI."""
from __future__ import annotations

import argparse

import pytest
import torch

from sinkfix.capture import fast_path
from sinkfix.cli.main import build_parser
from sinkfix.errors import SettingsError
from sinkfix.settings import AnalysisSettings


def test_kernel_is_validated_and_left_out_of_cache_keys():
    with pytest.raises(SettingsError, match="kernel must be one of auto, blocked, triton"):
        AnalysisSettings(kernel="cuda")
    assert AnalysisSettings(kernel="triton").key_dict() == AnalysisSettings().key_dict()
    assert AnalysisSettings.from_dict(AnalysisSettings(kernel="blocked").to_dict()).kernel == "blocked"


def test_auto_picks_blocked_off_cuda_and_triton_on_it():
    assert fast_path.choose("auto", torch.device("cpu"), keep_maps=False) == fast_path.Choice("blocked")
    assert fast_path.choose("blocked", torch.device("cuda"), keep_maps=False) == fast_path.Choice("blocked")
    assert fast_path.choose("auto", torch.device("cuda"), keep_maps=False) == fast_path.Choice("triton")


def test_forced_triton_without_cuda_or_interpreter_says_so(monkeypatch):
    monkeypatch.setattr(fast_path, "interpreting", lambda: False)
    with pytest.raises(fast_path.KernelUnsupportedError, match="need a CUDA device") as caught:
        fast_path.choose("triton", torch.device("cpu"), keep_maps=False)
    assert "\n" not in str(caught.value)


def test_the_cli_default_applies_where_settings_say_auto():
    with fast_path.choosing("blocked"):
        assert fast_path.requested("auto") == "blocked" and fast_path.requested("triton") == "triton"
        assert fast_path.choose("auto", torch.device("cuda"), keep_maps=False).kernel == "blocked"
    assert fast_path.requested("auto") == "auto"


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))
    yield path, parser


def test_every_command_with_query_block_has_kernel():
    with_blocks = [(path, p) for path, p in _commands(build_parser()) if "--query-block" in p._option_string_actions]
    assert len(with_blocks) >= 5
    assert [path for path, p in with_blocks if "--kernel" not in p._option_string_actions] == []


def test_a_forced_kernel_is_refused_where_a_command_never_consults_it(capsys):
    from sinkfix.cli.main import main

    with_kernel = {" ".join(path): p for path, p in _commands(build_parser()) if "--kernel" in p._option_string_actions}
    assert sorted(name for name, p in with_kernel.items() if p.get_default("fused")) == [
        "analyze", "batch", "evict", "massive"]
    assert main(["sinkrate", "--kernel", "triton"]) == 2  # refused before the model loads
    assert "'sinkfix sinkrate' runs its forward passes on the blocked path only" in capsys.readouterr().err
    assert all(p.get_default("blocked_only") for p in with_kernel.values() if not p.get_default("fused"))


class _Attention(torch.nn.Module):
    layer_idx = 0


def _why(**kwargs) -> str | None:
    from sinkfix.capture.observers import SinkObserver

    q, k = torch.zeros(1, 4, 6, 8), torch.zeros(1, 2, 6, 8)
    return fast_path._reason_inside(_Attention().eval(), q, k, k, None, 0.0, kwargs, SinkObserver(False, [6]))


def test_keywords_the_kernels_take_and_those_they_leave_to_the_blocked_path():
    assert _why(softcap=2.0, s_aux=torch.zeros(4), sliding_window=4, position_ids=None, normaliser="softmax") is None
    assert "position bias" in _why(position_bias=torch.zeros(1, 4, 6, 6))
    assert "'normaliser'" in _why(normaliser="sigmoid")  # the lab's other normalisers
    assert "'mystery'" in _why(mystery=0.5)
    assert _why(mystery=None) is None  # a keyword left at None changes nothing, as in eager
