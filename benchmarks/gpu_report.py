"""The report of benchmarks/gpu_check.py: the JSON file, rewritten after every row, and the issue's table."""
from __future__ import annotations

import json
from pathlib import Path


def write(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".tmp")
    partial.write_text(json.dumps(report, indent=2))
    partial.replace(out)  # never a half-written file


# Keys every record of a GPU run carries (benchmarks/gpu_run.py): in the report's header, not in each row's facts.
_CONTEXT = {"row", "row_name", "row_s", "limit_s", "device", "date", "torch", "cuda", "triton", "transformers",
            "trace", "cases"}


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def table(report: dict) -> str:
    """The issue's table (markdown) from the rows measured so far."""
    lines = [f"device: {report['device']} ({report['scale']}, {report['date']})", "",
             "| row | analyze | SDPA forward | ratio | peak memory above the weights, analyze / SDPA | kernel |",
             "|---|---:|---:|---:|---:|---|"]
    for row in report["rows"]:
        if "error" in row:
            lines.append(f"| {row['row']} | error: {row['error'][:80]} | | | | |")
        elif "sdpa_s" in row and "tokens_per_s" not in row:
            memory = "" if row.get("peak_mb") is None else f"{row['peak_mb']:,.0f} / {row['sdpa_peak_mb']:,.0f} MB"
            lines.append(f"| {row['row']} | {row['analyze_s']:.3f} s | {row['sdpa_s']:.3f} s | {row['ratio']:.1f}x "
                         f"| {memory} | {row['kernel']} |")
        elif "skipped" in row:
            lines.append(f"| {row['row']} | skipped: {row['skipped']} | | | | |")
        elif "tokens_per_s" in row:
            lines.append(f"| {row['row']} | {row['tokens_per_s']:,.0f} tokens/s | {row['bare_tokens_per_s']:,.0f} tokens/s "
                         f"| {row['ratio']:.1f}x | | {row['kernel']} |")
        elif "eager_s" in row:
            lines.append(f"| {row['row']} | {row['analyze_s']:.3f} s | eager {row['eager_s']:.3f} s "
                         f"| {row['analyze_over_eager']:.2f}x | {row['peak_mb'] or 0:,.0f} / eager "
                         f"{row['eager_peak_mb'] or 0:,.0f} MB | |")
        else:
            facts = ", ".join(f"{k}={_short(v)}" for k, v in row.items() if k not in _CONTEXT)
            lines.append(f"| {row['row']} | {facts} | | | | |")
    return "\n".join(lines)
