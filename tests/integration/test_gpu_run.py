"""benchmarks/gpu_run.sh --dry-run: the first GPU run's script, tested on the CPU before a GPU sees it.

The same path as on the GPU (carried wheels installed, versions printed, the kernels against their
reference, every gpu_check row under its time limit, JSON after every row) at toy sizes, through
Triton's interpreter. A one-module wheel stands in for the carried ones, so the install step runs too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORD = ("row", "T", "device", "date", "torch", "triton", "cuda", "row_s", "limit_s")


def _probe_wheel(folder: Path) -> Path:
    """The smallest wheel pip installs: one module and its dist-info."""
    folder.mkdir()
    wheel = folder / "sinkfix_probe-1.0-py3-none-any.whl"
    info = "sinkfix_probe-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("sinkfix_probe.py", "CARRIED = True\n")
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: sinkfix-probe\nVersion: 1.0\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return folder


@pytest.mark.slow
def test_the_dry_run_takes_the_gpu_path_on_the_cpu_and_writes_every_row(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable, GPU_WHEELS=str(_probe_wheel(tmp_path / "w")),
               GPU_SITE=str(tmp_path / "site"))
    done = subprocess.run(["bash", "benchmarks/gpu_run.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "installing 1 carried wheels" in done.stdout and (tmp_path / "site" / "sinkfix_probe.py").exists()
    assert "gpu-run: torch" in done.stdout and "triton" in done.stdout
    report = json.loads((tmp_path / "out" / "gpu_run.json").read_text())
    assert report["scale"] == "dry-run" and report["versions"]["triton"]
    rows = {record["row_name"]: record for record in report["rows"]}
    assert set(rows) == {"kernels", "exactness", "smollm2", "batched", "budget", "llama-1b-shape", "eager-peer",
                         "device-map", "smollm2-shape-64"}
    assert not [r for r in report["rows"] if "error" in r or r.get("ok") is False]
    for record in report["rows"]:
        assert all(key in record for key in RECORD if key != "T" or "skipped" not in record), record
    for name in ("smollm2", "llama-1b-shape", "smollm2-shape-64"):
        assert rows[name]["kernel"] == "triton" and rows[name]["ratio"] > 0
        assert {"analyze_s", "sdpa_s", "peak_mb", "sdpa_peak_mb"} <= set(rows[name])
    assert rows["batched"]["tokens_per_s"] > 0 and rows["budget"]["launches_per_forward"] == 4
    fused = next(r for r in report["rows"] if r["row"] == "float32 triton vs float32 blocked")
    assert fused["max_relative"] <= 1e-5
    assert "| row | analyze | SDPA forward |" in done.stdout
