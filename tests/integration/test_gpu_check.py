"""benchmarks/gpu_check.py: one line and status 1 without CUDA; every row's code path at toy sizes on the CPU."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu_check
from sinkfix.capture.kernels import interpreting


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_exits_1_with_one_line(capsys):
    assert gpu_check.main([]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and "CUDA" in captured.err


@pytest.mark.slow
@pytest.mark.skipif(not interpreting(), reason="the smoke run needs the Triton interpreter")
def test_cpu_smoke_runs_every_row_and_writes_the_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUT", str(tmp_path))
    assert gpu_check.main(["--cpu-smoke"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {row["row"].split(",")[0]: row for row in report["rows"]}
    assert not [row for row in report["rows"] if "error" in row]
    assert {"SmolLM2 shape (random weights)", "Llama-3.2-1B shape (random weights)", "eager peer", "batched",
            "float32 triton vs float32 blocked", "device_map split"} <= set(rows)
    assert rows["Llama-3.2-1B shape (random weights)"]["kernel"] == "triton" and rows["batched"]["tokens_per_s"] > 0
    assert rows["float32 triton vs float32 blocked"]["max_relative"] <= 1e-5
    assert "| row | analyze | SDPA forward |" in capsys.readouterr().out
