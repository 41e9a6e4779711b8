"""Experiment progress off a terminal: a log of a long job says how far it is, without a line per step."""
from __future__ import annotations

import pytest

from sinkfix.cli import common


def test_progress_off_a_terminal_prints_each_stage_and_then_throttles(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 1.0, 2.0, 40.0, 41.0, 42.0])
    monkeypatch.setattr(common.time, "monotonic", lambda: next(clock))
    bar = common.StageProgress(every=30.0)  # pytest's captured stderr is not a terminal
    bar(1, 6, "softmax seed 0")    # t=0: a new stage, printed
    bar(2, 6, "softmax seed 0")    # t=1: same stage, within 30 s, quiet
    bar(3, 6, "softmax seed 0")    # t=2: quiet
    bar(4, 6, "softmax seed 0")    # t=40: 30 s since the last line, printed
    bar(5, 6, "relu seed 0")       # t=41: a new stage, printed
    bar(6, 6, "relu seed 0")       # t=42: quiet
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["... softmax seed 0: 1/6", "... softmax seed 0: 4/6", "... relu seed 0: 5/6"]
