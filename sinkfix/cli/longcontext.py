"""``python -m sinkfix streaming | kvquant``: what sinks do to long-context inference.

``streaming`` runs window attention with k sinks (masked, stream or recompute mode) beside dense
attention; ``kvquant`` fake-quantises the KV cache with the first tokens (or the sinks) kept in
full precision. Both save their result to the experiments table and can print it as JSON.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinkfix.cli.analyze import load_with_progress
from sinkfix.cli.common import write_json
from sinkfix.errors import InputError, SettingsError
from sinkfix.experiments import kvquant, streaming
from sinkfix.cli.owner import viewer_of
from sinkfix.policy.ownership import Viewer
from sinkfix.progress import Progress
from sinkfix.store import Store

MODES = ("masked", "stream", "recompute")
POS_SHIFT = ("both", "on", "off")


def _ints(raw: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise SettingsError(f"{what} must be comma-separated whole numbers, got {raw!r}") from None
    if not values:
        raise SettingsError(f"give at least one value for {what}")
    return values


def _keep(raw: str) -> list[int | str]:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    return [p if p == "sinks" else _ints(p, "--keep")[0] for p in parts] or _ints("", "--keep")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("streaming", help="window attention with k sinks (StreamingLLM) beside dense attention")
    parser.add_argument("--model", default="smollm2-135m", help="embedded name, hub id or local directory (causal LM)")
    parser.add_argument("--text-file", required=True, help="UTF-8 text (e.g. tinyshakespeare.txt)")
    parser.add_argument("--window", type=int, default=256, help="window W (masked, recompute) or recent size R (stream)")
    parser.add_argument("--sinks", default="0,1,2,4,8", help="comma-separated numbers of first tokens kept")
    parser.add_argument("--mode", choices=MODES, default="masked")
    parser.add_argument("--tokens", type=int, help="tokens of the text used (default: 2048 masked, all others)")
    parser.add_argument("--pos-shift", choices=POS_SHIFT, default="both", help="stream mode: RoPE position re-assignment")
    parser.add_argument("--step", type=int, default=streaming.DEFAULT_STEP,
                        help="stream mode without pos_shift: tokens per forward (exact)")
    parser.add_argument("--stride", type=int, default=1, help="recompute: positions scored per forward (1 = exact)")
    parser.add_argument("--no-dense", action="store_true", help="stream/recompute: skip the dense forward")
    parser.add_argument("--block", type=int, default=streaming.DEFAULT_BLOCK, help="positions per bootstrap unit")
    parser.add_argument("--json", metavar="PATH|-", help="write the result JSON to PATH, or to stdout with -")
    parser.add_argument("--no-save", action="store_true", help="do not store the result in the run database")
    parser.set_defaults(handler=run_streaming)

    parser = commands.add_parser("kvquant", help="KV-cache fake quantisation keeping the first tokens or the sinks exact")
    parser.add_argument("--model", default="smollm2-135m", help="embedded name, hub id or local directory (causal LM)")
    parser.add_argument("--text-file", required=True, help="UTF-8 text (e.g. tinyshakespeare.txt)")
    parser.add_argument("--bits", default="8,4,2", help="comma-separated bit widths (16 = unquantised)")
    parser.add_argument("--keep", default="0,1,4", help="comma-separated: N first tokens kept, or 'sinks'")
    parser.add_argument("--group", type=int, default=kvquant.DEFAULT_GROUP,
                        help="values per quantisation group (channels per token, or tokens per channel)")
    parser.add_argument("--keys", choices=kvquant.GRANULARITIES, default="per-token",
                        help="key scales per token, or per channel over groups of tokens (KIVI: per-channel)")
    parser.add_argument("--values", choices=kvquant.GRANULARITIES, default="per-token",
                        help="value scales per token (KIVI) or per channel")
    parser.add_argument("--max-tokens", type=int, default=kvquant.DEFAULT_MAX_TOKENS, help="tokens per chunk")
    parser.add_argument("--max-chunks", type=int, default=kvquant.DEFAULT_MAX_CHUNKS, help="chunks scored")
    parser.add_argument("--json", metavar="PATH|-", help="write the result JSON to PATH, or to stdout with -")
    parser.add_argument("--no-save", action="store_true", help="do not store the result in the run database")
    parser.set_defaults(handler=run_kvquant)


def run_streaming(args: argparse.Namespace) -> int:
    sinks = _ints(args.sinks, "--sinks")
    text = _read(args.text_file)
    store = None if args.no_save else Store()
    loaded = load_with_progress(args.model)
    bar = Progress()
    try:
        if args.mode == "masked":
            result = streaming.masked_window(loaded, text, args.window, sinks, args.tokens or 2048, args.block, bar)
        elif args.mode == "stream":
            shifts = {"both": (True, False), "on": (True,), "off": (False,)}[args.pos_shift]
            result = streaming.stream_many(loaded, text, args.window, sinks, shifts, args.tokens, args.step,
                                           args.block, not args.no_dense, progress=bar)
        else:
            result = streaming.recompute(loaded, text, args.window, args.stride, args.tokens, args.block,
                                         not args.no_dense, bar)
    finally:
        bar.close()
    data = result.to_json()
    print(f"{data['model']}: {data['mode']}, window {data['window']}, T = {data['n_tokens']}, "
          f"{data['n_positions']} positions scored", file=sys.stderr)
    if data["dense_ppl"] is not None:
        print(f"  dense                 ppl {data['dense_ppl']:10.2f}", file=sys.stderr)
    for row in data["settings"]:
        low, high = row["ppl_ci95"]
        print(f"  {row['name']:<22} ppl {row['ppl']:10.2f}  95% CI [{low:.2f}, {high:.2f}]", file=sys.stderr)
    return _finish(store, "streaming", data, f"{data['model']} {data['mode']} W={data['window']} T={data['n_tokens']}",
                   result.headline(), args.json, viewer_of(args))


def run_kvquant(args: argparse.Namespace) -> int:
    bits, keep = _ints(args.bits, "--bits"), _keep(args.keep)
    text = _read(args.text_file)
    store = None if args.no_save else Store()
    loaded = load_with_progress(args.model)
    bar = Progress()
    try:
        result = kvquant.kv_quant(loaded, text, bits, keep, args.group, args.max_tokens, args.max_chunks, bar,
                                  keys=args.keys, values=args.values)
    finally:
        bar.close()
    data = result.to_json()
    print(f"{data['model']}: {data['n_chunks']} chunks of {data['max_tokens']} tokens, keys {data['keys']}, values "
          f"{data['values']}, group {data['group']}, unquantised ppl {data['dense_ppl']:.3f}", file=sys.stderr)
    for row in data["settings"]:
        low, high = row["delta_nll_ci95"]
        gain = ""
        if "delta_vs_none" in row:
            g_low, g_high = row["delta_vs_none_ci95"]
            gain = f"  vs none kept {row['delta_vs_none']:+.4f} [{g_low:+.4f}, {g_high:+.4f}]"
        print(f"  {row['name']:<24} ppl {row['ppl']:9.3f}  dNLL {row['delta_nll']:+.4f} [{low:+.4f}, {high:+.4f}]{gain}",
              file=sys.stderr)
    return _finish(store, "kvquant", data, f"{data['model']} bits={args.bits} keep={args.keep} K {args.keys} "
                   f"V {args.values}", result.headline(),
                   args.json, viewer_of(args))


def _finish(store: Store | None, kind: str, data: dict, label: str, headline: float | None, target: str | None,
            viewer: Viewer) -> int:
    if store is not None:
        data["id"] = store.save_experiment(kind, data, label, headline, viewer=viewer)
        print(f"saved as experiment #{data['id']} in {store.path}", file=sys.stderr)
    if target:
        write_json(data, target)
    return 0
