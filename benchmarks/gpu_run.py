"""The first GPU run, prepared: the kernels against their reference on the device, then every gpu_check row,
each under its own time limit, JSON to ``$OUT/gpu_run.json`` after every row.

``benchmarks/gpu_run.sh`` calls this after installing the carried wheels and printing the versions.
The GPU machines hold no model weights, so the rows run on random weights of SmolLM2's and
Llama-3.2-1B's shapes (``benchmarks/shapes.py``): the same shapes, the same times. Rows run in a child
process; the parent watches the clock. A row past its limit, or a crash that takes the CUDA context
with it, ends the child; the row is recorded as failed and a new child goes on with the next rows.
The whole run keeps within ``--budget-s`` (rows that no longer fit are recorded as skipped).

Each record: ``row``, ``T``, ``analyze_s``, ``sdpa_s``, ``ratio``, ``peak_mb``, ``sdpa_peak_mb``,
``tokens_per_s`` where it applies, ``device``, ``date``, the versions, and ``ok`` or ``error``.
``--dry-run`` takes the same path on the CPU through Triton's interpreter at toy sizes (a test runs it).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Seconds per row on the GPU, in the order they run (most wanted first); shape rows by their T.
LIMITS = {"kernels": 60, "exactness": 90, "smollm2": 60, "batched": 60, "budget": 30, "llama-1b-shape": 60,
          "smollm2-shape-32768": 45, "smollm2-shape-65536": 60, "smollm2-shape-131072": 90,
          "smollm2-shape-16384": 30, "eager-peer": 45, "device-map": 45}
SHAPE_LIMIT = 45  # a shape row of another T (the dry run's)
GRACE_S = 20  # past a row's limit, the parent ends a child that the child's own alarm did not stop


def rows(dry_run: bool) -> list[str]:
    from benchmarks.gpu_rows import FULL, SMOKE

    scale = SMOKE if dry_run else FULL
    shaped = [f"smollm2-shape-{t}" for t in scale.shape_ts]
    ordered = [name for name in LIMITS if not name.startswith("smollm2-shape-") or name in shaped]
    return ordered + [name for name in shaped if name not in ordered]


def limit(name: str) -> int:
    return LIMITS.get(name, SHAPE_LIMIT)


# ---- the parent: children, clock, records ---------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU through the Triton interpreter")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "cache/gpu-run"))
    parser.add_argument("--budget-s", type=float, default=420.0, help="the whole run's seconds")
    parser.add_argument("--only", help="comma-separated row names")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # rows for a child process
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(args.child.split(","), args.out, args.deadline, args.dry_run)
    args.out.mkdir(parents=True, exist_ok=True)
    report_path, current = args.out / "gpu_run.json", args.out / "gpu_run.current"
    report_path.unlink(missing_ok=True)
    deadline = time.time() + args.budget_s
    pending = args.only.split(",") if args.only else rows(args.dry_run)
    while pending:
        current.unlink(missing_ok=True)
        command = [sys.executable, __file__, "--child", ",".join(pending), "--out", str(args.out),
                   "--deadline", str(deadline)] + (["--dry-run"] if args.dry_run else [])
        env = dict(os.environ, **({"TRITON_INTERPRET": "1"} if args.dry_run else {}))
        process = subprocess.Popen(command, env=env)
        stuck = _watch(process, current)
        done = {record["row_name"] for record in _read(report_path).get("rows", [])}
        pending = [name for name in pending if name not in done]
        if not pending:
            break
        name, started = _started(current)
        failed = name if name in pending else pending[0]
        why = (f"ended by the parent: still running {time.time() - started:.0f} s after its start (limit {limit(failed)} s)"
               if stuck else f"the child process exited with status {process.returncode} during this row")
        _append(report_path, _stamp({"row": failed, "row_name": failed, "error": why}, args.dry_run), args.dry_run)
        pending.remove(failed)
    report = _read(report_path)
    from benchmarks.gpu_report import table

    print(table({"device": report.get("device", "?"), "scale": report.get("scale", "?"),
                 "date": report.get("date", "?"), "rows": report.get("rows", [])}))
    print(f"wrote {report_path}")
    bad = [r for r in report.get("rows", []) if "error" in r or r.get("ok") is False]
    return 0 if not bad else 2


def _watch(process: subprocess.Popen, current: Path) -> bool:
    """Wait for the child; end it if its current row runs past its limit (True when it had to)."""
    while process.poll() is None:
        name, started = _started(current)
        if name and time.time() - started > limit(name) + GRACE_S:
            process.kill()
            process.wait()
            return True
        time.sleep(0.5)
    return False


def _started(current: Path) -> tuple[str | None, float]:
    try:
        name, started = current.read_text().split()
        return name, float(started)
    except (OSError, ValueError):
        return None, time.time()


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _append(path: Path, record: dict, dry_run: bool) -> None:
    """Add one record and rewrite the file whole (never half-written: a run cut short keeps its rows)."""
    from benchmarks.gpu_report import write

    report = _read(path) or {**_environment(dry_run), "rows": []}
    report["rows"].append(record)
    write(path, report)


def _environment(dry_run: bool) -> dict:
    import torch

    versions = {"torch": torch.__version__, "cuda": torch.version.cuda}
    for name in ("triton", "transformers"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not dry_run else "cpu (Triton interpreter)"
    return {"device": device, "scale": "dry-run" if dry_run else "full", "date": time.strftime("%Y-%m-%d"),
            "versions": versions}


def _stamp(record: dict, dry_run: bool) -> dict:
    environment = _environment(dry_run)
    return {**record, "device": environment["device"], "date": environment["date"], **environment["versions"]}


# ---- the child: the rows themselves -----------------------------------------------------------------

def child(names: list[str], out: Path, deadline: float, dry_run: bool) -> int:
    import torch

    import sinkfix
    from benchmarks import gpu_rows

    scale = replace(gpu_rows.SMOKE if dry_run else gpu_rows.FULL, synthetic=True)
    if not dry_run and not torch.cuda.is_available():
        print("gpu-run: no CUDA device is available here (use --dry-run on the CPU)", file=sys.stderr)
        return 1
    environment = _environment(dry_run)
    signal.signal(signal.SIGALRM, _out_of_time)
    with tempfile.TemporaryDirectory() as folder:
        small = gpu_rows.base_model(sinkfix, scale, Path(folder))
        calls = dict(gpu_rows.steps(sinkfix, small, scale, Path(folder)))
        calls["kernels"] = lambda: kernel_rows(scale.device, scale.exact_t if dry_run else 300)
        calls["budget"] = lambda: [budget_row(sinkfix, small, scale)]
        for name in names:
            left = deadline - time.time()
            (out / "gpu_run.current").write_text(f"{name} {time.time()}")
            started = time.perf_counter()
            if left < min(limit(name), 20):
                records = [{"row": name, "skipped": f"{left:.0f} s of the run's budget left, the row may take {limit(name)} s"}]
            else:
                signal.alarm(int(min(limit(name), left)))
                try:
                    records = calls[name]()
                except Exception as error:  # noqa: BLE001 - one failed row (out of memory, say) must not lose the rest
                    records = [{"row": name, "error": f"{type(error).__name__}: {error}"[:500],
                                "trace": traceback.format_exc()[-2000:]}]
                finally:
                    signal.alarm(0)
            for record in records:
                _append(out / "gpu_run.json", {**record, "row_name": name, "row_s": time.perf_counter() - started,
                                               "limit_s": limit(name), "device": environment["device"],
                                               "date": environment["date"], **environment["versions"]}, dry_run)
            print(f"gpu-run: {name} done in {time.perf_counter() - started:.1f} s", flush=True)
            _free()
    return 0


def _out_of_time(signum, frame) -> None:
    raise TimeoutError("the row ran past its time limit")


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def kernel_rows(device: str, n: int) -> list[dict]:
    """Both kernels against the float64 reference at small shapes on the device, float32 and bfloat16."""
    from benchmarks.gpu_kernels import compare

    return [compare(device, dtype, n) for dtype in ("float32", "bfloat16")]


def budget_row(sinkfix, small, scale) -> dict:
    """Launches and host synchronisations of one analysis (on CUDA: the real synchronisations)."""
    from benchmarks import budget
    from benchmarks.gpu_rows import text

    n = min(1024, scale.smollm2_t)
    with budget.counting(device_only=scale.device == "cuda") as counted:
        analysis = sinkfix.analyze(text(n), small, sinkfix.AnalysisSettings(max_tokens=n, map_token_limit=0,
                                                                                    kernel="triton"))
    per = counted.per_forward()
    layers = small.n_layers
    return {"row": f"launch and sync budget, {analysis.n_tokens}", "T": analysis.n_tokens, "kernel": analysis.kernel,
            "launches_per_forward": per["launches"], "syncs_per_forward": per["syncs"], "syncs": dict(counted.syncs),
            "handler_ops_per_layer": per["handler_ops_per_layer"], "attention_layers": layers,
            "ok": per["launches"] <= 2 * layers + 2}


if __name__ == "__main__":
    sys.exit(main())
