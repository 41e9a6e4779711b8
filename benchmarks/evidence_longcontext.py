"""Evidence for the README: StreamingLLM's and sink-preserving KV quantisation's findings, on SmolLM2.

Runs, in order (each stage is written to --out as soon as it finishes, so a partial run still counts):
1. masked window 256 at T = 2048 with 0/1/2/4/8 sinks, and dense (Llama-2-7B's 0/1/2/4/8-sink table);
2. KV quantisation int8/int4/int2 keeping the first 0/1/4 tokens or SinkFix's sinks;
3. streaming past the trained context (T = 12288 > 8192): 0 + 1024 and 4 + 1020, pos_shift off
   (exact in 256-token steps), dense on the same tokens, and the recompute reference;
4. streaming 4 + 1020 with pos_shift on (token by token: the slow stage, last).

Usage: python benchmarks/evidence_longcontext.py [--data DIR] [--out PATH] [--quick] [--skip STAGE,...]
Prints a Markdown table (paper beside SinkFix) on stdout. torch runs on one thread: on a shared
2-core machine two threads per process thrash (a 300-token forward took 24 s instead of 2.8 s).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

PAPER_SINKS = {0: 3359.95, 1: 11.88, 2: 10.51, 4: 9.59, 8: 9.54}  # Llama-2-7B, Xiao et al. Table
PAPER_STREAM = {"dense": 5641, "window (0 + 1024)": 5158, "StreamingLLM (4 + 1020)": 5.40, "recompute": 5.43}


def _progress(done: int, total: int, what: str) -> None:
    print(f"  {what}: {done}/{total}", file=sys.stderr, flush=True)


def run(data: Path, out: Path, quick: bool, skip: set[str], stream_tokens: int = 12288, recent: int = 1020,
        recompute_stride: int = 256) -> dict:
    import sinkfix
    from sinkfix.experiments import kvquant, streaming

    text = (data / "tinyshakespeare.txt").read_text(encoding="utf-8")
    model = sinkfix.get_model("smollm2-135m")
    results: dict = json.loads(out.read_text()) if out.exists() else {}

    def stage(name: str, work) -> None:
        if name in skip or name in results:
            return
        began = time.time()
        print(f"stage {name}", file=sys.stderr, flush=True)
        results[name] = {**work(), "seconds": round(time.time() - began, 1)}
        out.write_text(json.dumps(results))

    stage("masked", lambda: streaming.masked_window(model, text, 256, (0, 1, 2, 4, 8), 512 if quick else 2048,
                                                    progress=_progress).to_json())
    stage("kvquant", lambda: kvquant.kv_quant(model, text, (8, 4, 2), (0, 1, 4, "sinks"), max_tokens=512,
                                              max_chunks=2 if quick else 6, progress=_progress).to_json())
    n = 1400 if quick else stream_tokens
    stage("stream", lambda: streaming.stream_many(model, text, recent, (0, 4), (False,), n, step=256,
                                                  recompute_stride=recompute_stride or None, progress=_progress).to_json())
    stage("stream_shift", lambda: streaming.stream_many(model, text, recent, (4,), (True,), 1100 if quick else n,
                                                        dense=False, progress=_progress).to_json())
    return results


def _fmt(x: float | None) -> str:
    return "–" if x is None else (f"{x:,.2f}" if x < 1e5 else f"{x:.3g}")


def _ci(values: list | None) -> str:
    return "" if not values else f" [{_fmt(values[0])}, {_fmt(values[1])}]"


def table(results: dict) -> str:
    lines = []
    masked = results.get("masked")
    if masked:
        lines += [f"**Window attention with k sinks** (masked, window {masked['window']}, T = {masked['n_tokens']}, "
                  f"{masked['n_positions']} scored positions; 95% CI over {masked['ci_unit']})", "",
                  "| setting | Llama-2-7B (paper) | SmolLM2-135M ppl [95% CI] | ΔNLL vs dense [95% CI] |",
                  "|---|---|---|---|",
                  f"| dense | – | {_fmt(masked['dense_ppl'])}{_ci(masked['dense_ppl_ci95'])} | 0 |"]
        for row in masked["settings"]:
            lines.append(f"| {row['sinks']} sinks + window | {_fmt(PAPER_SINKS.get(row['sinks']))} | "
                         f"{_fmt(row['ppl'])}{_ci(row['ppl_ci95'])} | {row['delta_nll']:+.3f} [{row['delta_nll_ci95'][0]:+.3f}, {row['delta_nll_ci95'][1]:+.3f}] |")
        lines.append("")
    stream = results.get("stream")
    if stream:
        lines += [f"**Streaming past the trained context** (T = {stream['n_tokens']}, trained {stream['trained_positions']}; "
                  f"ppl over positions ≥ {stream['scored_from']}, and over positions ≥ {stream['trained_positions']})", "",
                  "| setting | Llama-2-13B, 65k PG19 (paper) | SmolLM2 ppl [95% CI] | SmolLM2 ppl past 8192 |", "|---|---|---|---|",
                  f"| dense | {_fmt(PAPER_STREAM['dense'])} | {_fmt(stream['dense_ppl'])}{_ci(stream['dense_ppl_ci95'])} | "
                  f"{_fmt(stream.get('dense_ppl_past_trained'))} |"]
        rows = stream["settings"] + results.get("stream_shift", {}).get("settings", [])
        for row in rows:
            paper = (PAPER_STREAM["recompute"] if row["name"] == "recompute" else
                     PAPER_STREAM["StreamingLLM (4 + 1020)"] if row["sinks"] == 4 and row["pos_shift"] else
                     PAPER_STREAM["window (0 + 1024)"] if row["sinks"] == 0 else None)
            lines.append(f"| {row['name']} | {_fmt(paper)} | {_fmt(row['ppl'])}{_ci(row['ppl_ci95'])} | "
                         f"{_fmt(row.get('ppl_past_trained'))} |")
        lines.append("")
    quant = results.get("kvquant")
    if quant:
        lines += [f"**KV quantisation** ({quant['n_chunks']} chunks of {quant['max_tokens']} tokens, group {quant['group']}, "
                  f"unquantised ppl {_fmt(quant['dense_ppl'])}; 95% paired bootstrap CI over chunks)", "",
                  "| setting | tokens kept | ppl | ΔNLL vs unquantised [95% CI] |", "|---|---|---|---|"]
        for row in quant["settings"]:
            lines.append(f"| {row['name']} | {row['kept_tokens']:.1f} | {_fmt(row['ppl'])} | "
                         f"{row['delta_nll']:+.4f} [{row['delta_nll_ci95'][0]:+.4f}, {row['delta_nll_ci95'][1]:+.4f}] |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default="cache/evidence_longcontext.json")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    parser.add_argument("--skip", default="", help="comma-separated stages to skip: masked,kvquant,stream,stream_shift")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stream-tokens", type=int, default=12288, help="tokens streamed (past 8192)")
    parser.add_argument("--recent", type=int, default=1020, help="recent tokens R of the streams")
    parser.add_argument("--recompute-stride", type=int, default=256, help="0: no recompute reference")
    parser.add_argument("--merge", nargs="*", default=[], help="more result files whose stages join the table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = run(Path(args.data), out, args.quick, {s for s in args.skip.split(",") if s}, args.stream_tokens,
                  args.recent, args.recompute_stride)
    for extra in args.merge:
        results = {**json.loads(Path(extra).read_text()), **results}
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
