"""``python -m sinkfix sinkrate | massive``: why sinks form (Gu et al.'s protocol, Sun et al.'s massive activations)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinkfix.analysis.display import show_token
from sinkfix.cli.analyze import load_with_progress
from sinkfix.cli.common import read_text_arg, write_json
from sinkfix.errors import InputError, SettingsError
from sinkfix.experiments import massive, sinkrate
from sinkfix.models import DEFAULT_MODEL
from sinkfix.progress import Progress
from sinkfix.settings import BOS_MODES, DEFAULT_EPSILON
from sinkfix.cli.owner import viewer_of
from sinkfix.store import Store

BOS_HELP = "auto: as the tokenizer does; always: prepend the model's BOS token; never: drop it"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("sinkrate", help="Gu et al.'s sink rate of token 0 on natural, random and repeated tokens")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, hub id or local directory")
    parser.add_argument("--text-file", help="UTF-8 text for the natural sequences (non-overlapping windows)")
    parser.add_argument("--kinds", default=",".join(sinkrate.KINDS), help="comma-separated: natural,random,repeated")
    parser.add_argument("--n", type=int, default=100, help="sequences per kind")
    parser.add_argument("--length", type=int, default=64, help="tokens per sequence, special tokens included")
    parser.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, help="threshold on the visible-query mean")
    parser.add_argument("--bos", choices=BOS_MODES, default="auto", help=BOS_HELP)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draws and the bootstrap")
    parser.add_argument("--batch-size", type=int, default=sinkrate.DEFAULT_BATCH, help="sequences per forward")
    parser.add_argument("--json", metavar="PATH|-", help="write the result JSON to PATH, or to stdout with -")
    parser.add_argument("--no-save", action="store_true", help="do not store the result in the run database")
    parser.set_defaults(handler=run_sinkrate)

    parser = commands.add_parser("massive", help="Sun et al.'s massive activations, their link to sinks, and zero/mean interventions")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, hub id or local directory")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text (or - for stdin)")
    source.add_argument("--text-file", help="a UTF-8 file holding the text")
    parser.add_argument("--reference-file", help="text whose chunks give the mean values (default: the text itself)")
    parser.add_argument("--max-tokens", type=int, default=massive.DEFAULT_MAX_TOKENS, help="tokens analysed, and per chunk")
    parser.add_argument("--max-chunks", type=int, default=massive.DEFAULT_MAX_CHUNKS, help="chunks scored by the intervention")
    parser.add_argument("--no-intervene", action="store_true", help="skip the zero/mean intervention (no LM head needed)")
    parser.add_argument("--arms", default="zero,mean",
                        help="intervention arms, comma-separated: zero, mean (mean needs --reference-file, or a text "
                             "of two or more chunks: one chunk's mean is its own value)")
    parser.add_argument("--bos", choices=BOS_MODES, default="auto", help=BOS_HELP)
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--json", metavar="PATH|-", help="write the result JSON to PATH, or to stdout with -")
    parser.add_argument("--no-save", action="store_true", help="do not store the result in the run database")
    parser.set_defaults(handler=run_massive, fused=True)  # its analyses take --kernel


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None


def _r(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def run_sinkrate(args: argparse.Namespace) -> int:
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    sinkrate._check(kinds, args.n, args.length, args.epsilon, args.bos, args.batch_size)
    if "natural" in kinds and not args.text_file:
        raise SettingsError("natural sequences need a text: give --text-file (or leave natural out of --kinds)")
    text = _read(args.text_file) if args.text_file else None
    store = None if args.no_save else Store()
    loaded = load_with_progress(args.model)
    bar = Progress()
    try:
        result = sinkrate.sink_rate_protocol(loaded, kinds, args.n, args.length, args.epsilon, args.text_file,
                                             args.seed, args.bos, args.batch_size, text=text, progress=bar)
    finally:
        bar.close()
    print(f"{result.model}: Sink_1 (token index 0), eps={result.epsilon}, T={result.length}, n={result.n}, bos={result.bos}",
          file=sys.stderr)
    for kind, rate in result.kinds.items():
        low, high = rate.ci95
        print(f"  {kind:<9} {100 * rate.rate:6.2f}%  95% CI [{100 * low:.2f}, {100 * high:.2f}]", file=sys.stderr)
    for paper, rates in sinkrate.PAPER.items():
        print(f"  paper {paper}: " + " / ".join(f"{k} {v:.2f}%" for k, v in rates.items()), file=sys.stderr)
    data = result.to_json()
    if store is not None:
        data["id"] = store.save_experiment("sinkrate", data, f"{result.model} n={result.n} T={result.length}",
                                           result.headline(), viewer=viewer_of(args))
        print(f"saved as experiment #{data['id']} in {store.path}", file=sys.stderr)
    if args.json:
        write_json(data, args.json)
    return 0


def run_massive(args: argparse.Namespace) -> int:
    text = read_text_arg(args.text) if args.text is not None else _read(args.text_file)
    reference = [_read(args.reference_file)] if args.reference_file else None
    store = None if args.no_save else Store()
    loaded = load_with_progress(args.model)
    bar = Progress()
    try:
        result = massive.massive_activations(loaded, text, reference, not args.no_intervene, args.max_tokens,
                                             args.max_chunks, args.bos, seed=args.seed, progress=bar,
                                             arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()))
    finally:
        bar.close()
    top = result.top
    print(f"{result.model}: largest |h| {top['max_abs']:.1f} at layer {top['layer']}, token {top['token']} "
          f"({show_token(top['token_text'])}), dim {top['dim']}; median |h| {top['median_abs']:.4f}, ratio {top['ratio']:.0f}x",
          file=sys.stderr)
    if result.first_massive_layer is None:
        print("  no massive activation (none has |h| > 100 and > 1000x the median)", file=sys.stderr)
    else:
        print(f"  massive (|h| > 100 and > 1000x median) from layer {result.first_massive_layer}, "
              f"dims {result.massive_dims}", file=sys.stderr)
    link = result.link
    print(f"  rank correlation of a token's peak |h| with its sink rate: {_r(link['spearman_sink_rate'])}, "
          f"with its value norm: {_r(link['spearman_value_norm'])}; largest peak on token {link['top_peak_token']}, "
          f"highest sink rate on token {link['top_sink_token']}", file=sys.stderr)
    if result.intervention:
        for name, arm in result.intervention["arms"].items():
            low, high = arm["ci95"]
            print(f"  set to {name:<4} at layer {result.intervention['layer']}: dNLL {arm['delta_nll']:+.4f} "
                  f"[{low:+.4f}, {high:+.4f}] (ppl {arm['baseline_ppl']:.2f} -> {arm['intervened_ppl']:.2f})",
                  file=sys.stderr)
    for note in result.notes:
        print(f"  note: {note}", file=sys.stderr)
    data = result.to_json()
    if store is not None:
        data["id"] = store.save_experiment("massive", data, f"{result.model} {len(result.tokens)} tokens",
                                           result.headline(), viewer=viewer_of(args))
        print(f"saved as experiment #{data['id']} in {store.path}", file=sys.stderr)
    if args.json:
        write_json(data, args.json)
    return 0
