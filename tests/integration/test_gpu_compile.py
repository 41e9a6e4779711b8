"""The ahead-of-time compile check: a representative subset of the kernel variants, compiled for sm_80 and
sm_90 with the ptxas inside the triton wheel, no GPU needed (the full table: `make gpu-compile`).

It runs in a subprocess: this process has TRITON_INTERPRET=1 (tests/conftest.py), under which the jit
functions are the interpreter's and cannot be compiled.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_compile
from sinkfix.capture.kernels import triton_available

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not triton_available(), reason="triton is not installed")


def test_the_subset_compiles_fits_and_uses_tensor_cores(tmp_path):
    out = tmp_path / "compile.json"
    done = subprocess.run([sys.executable, "benchmarks/gpu_compile.py", "--subset", "--jobs", "2", "--json", str(out)],
                          cwd=ROOT, env=dict(os.environ, TRITON_INTERPRET="1"), capture_output=True, text=True,
                          timeout=900)
    records = json.loads(out.read_text())
    assert {(r["kernel"], r["arch"], r["dtype"], r["head_dim"], r["variant"]) for r in records} == {
        (k, f"sm_{a}", t, d, v) for k, a, t, d, v in gpu_compile.SUBSET}
    failures = {(r["kernel"], r["arch"], r["dtype"], r["head_dim"], r["variant"]): gpu_compile.reasons(r)
                for r in records if gpu_compile.reasons(r)}
    assert not failures and done.returncode == 0, (failures, done.stdout[-2000:], done.stderr[-2000:])
    for record in records:
        assert record["shared_bytes"] > 0 and record["registers"] > 0 and record["spill_bytes"] is not None
        assert record["mma"] == ("wgmma" if record["arch"] == "sm_90" else "mma.sync")


def test_the_check_fails_what_it_must():
    ok = dict(kernel="row_stats", arch="sm_80", dtype="bfloat16", head_dim=128, variant="plain", shared_bytes=90_112,
              shared_limit=166_912, registers=200, spill_bytes=0, mma="mma.sync", error=None)
    assert gpu_compile.reasons(ok) == []
    assert "shared memory" in gpu_compile.reasons(dict(ok, shared_bytes=172_032))[0]
    assert "spills" in gpu_compile.reasons(dict(ok, spill_bytes=4))[0]
    assert gpu_compile.reasons(dict(ok, spill_bytes=4, head_dim=256)) == []  # d > 128: spills allowed
    assert gpu_compile.reasons(dict(ok, spill_bytes=4, dtype="float32", mma="none")) == []  # float32: recorded only
    assert "tensor-core" in gpu_compile.reasons(dict(ok, mma="none"))[0]
    assert "does not compile" in gpu_compile.reasons(dict(ok, error="CompilationError: ..."))[0]
