"""Training runs: resuming after an interruption gives the uninterrupted run's weights and curves, finished
runs are reused, the summary has the issue's JSON shape with t-intervals over seeds, and the CLI stores it."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sinkfix.cli.main import main
from sinkfix.experiments.lab import checkpoint
from sinkfix.experiments.lab.runner import run_lab
from sinkfix.experiments.lab.settings import LabSettings, run_key
from sinkfix.experiments.lab.summary import SUMMARY_METRICS, t_interval
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

TINY = dict(task="backcopy", hidden=16, heads=2, layers=1, length=8, batch_size=4, steps=6, checkpoint_every=2)


class _Interrupt(Exception):
    pass


def _weights(root: Path, settings: LabSettings, variant: str, seed: int) -> dict[str, torch.Tensor]:
    return load_file(str(root / run_key(settings.resolved(), variant, seed) / checkpoint.MODEL_DIR / "model.safetensors"))


def test_an_interrupted_run_continues_from_its_last_checkpoint(tmp_path: Path) -> None:
    settings = LabSettings(variants=("sinklogit",), seeds=1, **TINY)
    whole = run_lab(settings, root=tmp_path / "whole")

    def stop_at_five(done: int, total: int, what: str) -> None:
        if done == 5:  # after step 5: the checkpoint of step 4 is on disk, step 5 is lost
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run_lab(settings, root=tmp_path / "cut", progress=stop_at_five)
    directory = tmp_path / "cut" / run_key(settings.resolved(), "sinklogit", 0)
    assert checkpoint.saved_info(directory)["step"] == 4 and not (directory / checkpoint.MODEL_DIR).exists()
    steps: list[int] = []
    resumed = run_lab(settings, root=tmp_path / "cut", progress=lambda done, total, what: steps.append(done))
    assert steps == [5, 6]  # only the steps after the checkpoint ran again
    a, b = _weights(tmp_path / "whole", settings, "sinklogit", 0), _weights(tmp_path / "cut", settings, "sinklogit", 0)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [c["val_loss"] for c in whole.runs[0]["checkpoints"]] == [c["val_loss"] for c in resumed.runs[0]["checkpoints"]]
    again: list[int] = []
    run_lab(settings, root=tmp_path / "cut", progress=lambda done, total, what: again.append(done))
    assert again == [6]  # a finished run is reused, not retrained


def test_json_shape_and_intervals_over_seeds(tmp_path: Path) -> None:
    result = run_lab(LabSettings(variants=("softmax", "relu"), seeds=2, **TINY), root=tmp_path).to_json()
    assert set(result) == {"variants", "runs"}
    assert list(result["variants"]) == ["softmax", "relu"]
    for variant, metrics in result["variants"].items():
        assert set(metrics) == set(SUMMARY_METRICS)
        for name, entry in metrics.items():
            assert set(entry) == {"mean", "ci95"}
            values = [run["final"][name] for run in result["runs"] if run["variant"] == variant]
            assert entry["mean"] == pytest.approx(np.mean(values))
            half = 12.7062047 * np.std(values, ddof=1) / math.sqrt(2)  # t(0.975, 1 degree of freedom)
            assert entry["ci95"] == pytest.approx([np.mean(values) - half, np.mean(values) + half], rel=1e-7, abs=1e-9)
    assert len(result["runs"]) == 4
    run = result["runs"][0]
    assert [c["step"] for c in run["checkpoints"]] == [0, 2, 4, 6] and run["final"] == run["checkpoints"][-1]
    assert Path(run["model_dir"], "config.json").exists()
    assert t_interval([3.0]) == (3.0, 3.0)


def test_cli_prints_the_json_and_stores_the_sweep(tmp_path: Path, db_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["lab", "--task", "backcopy", "--attention", "softmax,gated", "--seeds", "1", "--steps", "2",
            "--hidden", "16", "--heads", "2", "--length", "8", "--batch-size", "4", "--checkpoint-every", "1",
            "--runs-dir", str(tmp_path), "--threads", "1", "--json", "-"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["variants"]) == {"softmax", "gated"}
    rows = Store(db_path).experiments(kind="lab", viewer=LOCAL)
    assert len(rows) == 1 and rows[0]["model"] == "lab/backcopy"
    assert Store(db_path).experiment(rows[0]["id"], viewer=LOCAL)["result"] == data


def test_bad_settings_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["lab", "--attention", "softmax,tanh", "--runs-dir", str(tmp_path), "--no-save"]) == 2
    assert "attention variants must be among" in capsys.readouterr().err
    assert main(["lab", "--hidden", "30", "--heads", "4", "--runs-dir", str(tmp_path), "--no-save"]) == 2
    assert "multiple of the heads" in capsys.readouterr().err
