"""``sinkfix profile | lengths | bos | secondary``: the 2025 sink findings on a model of your choice.

Four top-level commands, like ``sinkrate`` and ``massive`` beside them: the issue names ``profile`` and
``lengths`` as commands of their own, and each of the four is one experiment with its own options and
stored kind, so a ``findings`` group would only add a word to type. Each prints a summary with 95% CIs
and n on stderr, stores its result as an experiment (kind profile, lengths, bos, secondary) unless
``--no-save``, and writes its JSON with ``--json PATH|-``. The corpus is tinyshakespeare.txt in the
data folder (SINKFIX_DATA) unless ``--file`` names another UTF-8 file.
"""
from __future__ import annotations

import argparse
import sys

from sinkfix.analysis.display import show_token
from sinkfix.cli.analyze import load_with_progress
from sinkfix.cli.common import read_text_arg, write_json
from sinkfix.cli.owner import viewer_of
from sinkfix.errors import SettingsError
from sinkfix.experiments import bos_ablation, lengths, profile, secondary
from sinkfix.experiments.windows import read_corpus
from sinkfix.experiments.windows import shown as _ci
from sinkfix.progress import Progress
from sinkfix.settings import BOS_MODES, DEFAULT_EPSILON
from sinkfix.store import Store

MODEL = "smollm2-135m"
BOS_HELP = "auto: as the tokenizer does; always: prepend the model's BOS token; never: drop it"
FILE_HELP = "UTF-8 corpus cut into windows (default: tinyshakespeare.txt in SINKFIX_DATA)"


def _common(parser: argparse.ArgumentParser, windows: int, bos: bool = True) -> None:
    parser.add_argument("--model", default=MODEL, help="embedded name, hub id or local directory")
    parser.add_argument("--windows", type=int, default=windows, help="corpus windows (the unit of every CI)")
    parser.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, help="threshold on the visible-query mean α")
    if bos:
        parser.add_argument("--bos", choices=BOS_MODES, default="auto", help=BOS_HELP)
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--json", metavar="PATH|-", help="write the result JSON to PATH, or to stdout with -")
    parser.add_argument("--no-save", action="store_true", help="do not store the result in the run database")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("profile", help="per layer: token 0's norm, sink rate, token 0's α and the "
                                 "representation entropy, with CIs (Mix-Compress-Refine)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one text (or - for stdin)")
    source.add_argument("--file", help="a UTF-8 corpus, cut into --windows windows of --length tokens")
    parser.add_argument("--length", type=int, default=profile.DEFAULT_LENGTH, help="tokens per window (--file)")
    _common(parser, profile.DEFAULT_WINDOWS)
    parser.set_defaults(handler=run_profile)

    parser = commands.add_parser("lengths", help="sink rate, first-token mass and token 0's norm against the context "
                                 "length T (Barbero et al.)")
    parser.add_argument("--lengths", help="comma-separated T (default: 64, 128, ... up to the model's limit)")
    parser.add_argument("--file", help=FILE_HELP)
    _common(parser, lengths.DEFAULT_WINDOWS)
    parser.set_defaults(handler=run_lengths)

    parser = commands.add_parser("bos", help="NLL and sink rate against T with and without a BOS token, and with "
                                 "token 0 masked after the first layer (paired over windows)")
    parser.add_argument("--lengths", default=",".join(map(str, bos_ablation.DEFAULT_LENGTHS)),
                        help="comma-separated T: window tokens, a BOS arm adds one")
    parser.add_argument("--arms", default=",".join(bos_ablation.ARMS), help="comma-separated: " + ", ".join(bos_ablation.ARMS))
    parser.add_argument("--file", help=FILE_HELP)
    _common(parser, bos_ablation.DEFAULT_WINDOWS, bos=False)
    parser.set_defaults(handler=run_bos)

    parser = commands.add_parser("secondary", help="sinks past token 0: which tokens, which layers, and whether a "
                                 "massive activation predicts them (KVSink)")
    parser.add_argument("--length", type=int, default=secondary.DEFAULT_LENGTH, help="tokens per window")
    parser.add_argument("--share", type=float, default=100 * secondary.DEFAULT_SHARE,
                        help="%% of a layer's heads that must give the position α > ε")
    parser.add_argument("--min-queries", type=int, default=secondary.DEFAULT_MIN_QUERIES,
                        help="a causal position needs at least this many queries that see it")
    parser.add_argument("--file", help=FILE_HELP)
    _common(parser, secondary.DEFAULT_WINDOWS)
    parser.set_defaults(handler=run_secondary)


def _ints(raw: str | None) -> list[int] | None:
    if raw is None:
        return None
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise SettingsError(f"--lengths must be comma-separated whole numbers, got {raw!r}") from None
    if not values:
        raise SettingsError("give at least one length")
    return values


def _say(line: str = "") -> None:
    print(line, file=sys.stderr)


def _finish(args: argparse.Namespace, kind: str, result, label: str) -> int:
    data = result.to_json()
    if not args.no_save:
        store = Store()
        data["id"] = store.save_experiment(kind, data, label, result.headline(), viewer=viewer_of(args))
        _say(f"saved as experiment #{data['id']} in {store.path}")
    if args.json:
        write_json(data, args.json)
    return 0


def _run(args: argparse.Namespace, work):
    loaded = load_with_progress(args.model)
    bar = Progress()
    try:
        return work(loaded, bar)
    finally:
        bar.close()


def run_profile(args: argparse.Namespace) -> int:
    if args.text is not None:
        text = read_text_arg(args.text)
        result = _run(args, lambda m, bar: profile.profile_texts(m, [text], bos=args.bos, epsilon=args.epsilon,
                                                                 seed=args.seed, progress=bar))
    else:
        corpus, name = read_corpus(args.file)
        result = _run(args, lambda m, bar: profile.profile_corpus(m, corpus, name, args.windows, args.length, args.bos,
                                                                  args.epsilon, args.seed, bar))
    _say(f"{result.model}: layer profile over {result.n_texts} text(s) from {result.source}, ε = {result.epsilon}, "
         f"bos {result.bos}; mean [95% CI over texts]")
    _say(f"{'layer':>5}  {'token-0 norm':>26}  {'median norm':>24}  {'sink rate':>20}  {'token-0 α':>20}  "
         f"{'repr. entropy (nats)':>22}")
    for row in result.layers:
        _say(f"{row['layer']:>5}  {_ci(row['token0_norm'], 1):>26}  {_ci(row['median_norm'], 1):>24}  "
             f"{_ci(row['sink_rate'], 2):>20}  {_ci(row['token0_alpha'], 2):>20}  {_ci(row['repr_entropy'], 2):>22}")
    _say(result.together["sentence"])
    for note in result.notes:
        _say(f"note: {note}")
    return _finish(args, "profile", result, f"{result.model} {result.source} n={result.n_texts}")


def run_lengths(args: argparse.Namespace) -> int:
    corpus, name = read_corpus(args.file)
    chosen = _ints(args.lengths)
    result = _run(args, lambda m, bar: lengths.length_sweep(m, corpus, name, chosen, args.windows, args.bos,
                                                            args.epsilon, args.seed, bar))
    _say(f"{result.model}: {result.n_windows} windows of {name}, ε = {result.epsilon}, bos {result.bos}; "
         "mean [95% CI over windows]")
    _say(f"{'T':>6}  {'Sink₁^ε':>22}  {'first-token mass':>22}  {'late queries only':>22}  {'token-0 norm':>26}  "
         f"{'÷ median norm':>22}")
    for row in result.lengths:
        _say(f"{row['length']:>6}  {_ci(row['sink_rate']):>22}  {_ci(row['first_token_mass']):>22}  "
             f"{_ci(row['late_first_token_mass']):>22}  {_ci(row['token0_norm'], 1):>26}  "
             f"{_ci(row['token0_norm_ratio'], 1):>22}")
    trend = result.trend
    _say(f"T = {trend['from']} → {trend['to']}, per window: " + "; ".join(
        f"{metric.replace('_', ' ')} {_ci(trend[metric])} ({trend[metric + '_verdict']})"
        for metric in ("sink_rate", "first_token_mass", "late_first_token_mass")))
    for note in result.notes:
        _say(f"note: {note}")
    return _finish(args, "lengths", result, f"{result.model} {name} n={result.n_windows} T≤{trend['to']}")


def run_bos(args: argparse.Namespace) -> int:
    corpus, name = read_corpus(args.file)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    result = _run(args, lambda m, bar: bos_ablation.bos_ablation(m, corpus, name, _ints(args.lengths), args.windows,
                                                                 arms, args.epsilon, args.seed, bar))
    _say(f"{result.model}: {result.n_windows} windows of {name}, BOS {show_token(result.bos_token or '—')}, "
         f"ε = {result.epsilon}; mean [95% CI over windows]")
    for row in result.lengths:
        _say(f"T = {row['length']}")
        for arm, figures in row["arms"].items():
            _say(f"  {arm:<14} NLL {_ci(figures['nll'])}  Sink₁ {_ci(figures['sink_rate'])}")
        for name_, diff in row["comparisons"].items():
            _say(f"  {name_:<24} ΔNLL {_ci(diff['delta_nll'], 4)}  second half {_ci(diff['delta_nll_late'], 4)}  "
                 f"ΔSink₁ {_ci(diff['delta_sink_rate'])}")
    for note in result.notes:
        _say(f"note: {note}")
    return _finish(args, "bos", result, f"{result.model} {name} n={result.n_windows} T≤{result.lengths[-1]['length']}")


def _rate(entry: dict) -> str:
    if entry["value"] is None:
        return f"undefined (0 of {entry['total']})"
    ci = "" if entry["ci95"] is None else f" [{entry['ci95'][0]:.2f}, {entry['ci95'][1]:.2f}]"
    return f"{entry['value']:.2f}{ci} ({entry['hits']} of {entry['total']})"


def run_secondary(args: argparse.Namespace) -> int:
    corpus, name = read_corpus(args.file)
    result = _run(args, lambda m, bar: secondary.secondary_sinks(
        m, corpus, name, args.windows, args.length, args.epsilon, args.share / 100, args.min_queries, args.bos,
        args.seed, bar))
    _say(f"{result.model}: {len(result.sinks)} secondary sinks among {result.n_candidates} candidate positions "
         f"({result.n_windows} windows of {result.length} tokens of {name}; α > {result.epsilon} in ≥ "
         f"{100 * result.share:.0f}% of a layer's heads)")
    for row in result.by_token[:10]:
        _say(f"  {show_token(row['token']):<14} {row['kind']:<14} {row['sinks']:>4} of {row['occurrences']:>4} "
             f"occurrences; layers {row['layers']}; massive {row['massive']}")
    _say("  by kind: " + ", ".join(f"{k['kind']} {k['sinks']}/{k['candidates']}" for k in result.by_kind))
    _say(f"massive activation (Sun et al.) predicts a secondary sink: precision {_rate(result.predictor['precision'])}, "
         f"recall {_rate(result.predictor['recall'])}")
    for step in result.ladder[1:]:
        _say(f"  peak ≥ {step['ratio']:.0f}× median: precision {_rate(step['precision'])}, "
             f"recall {_rate(step['recall'])}")
    _say(f"token 0 holds a massive activation in {100 * result.token0_massive:.0f}% of windows")
    for note in result.notes:
        _say(f"note: {note}")
    return _finish(args, "secondary", result, f"{result.model} {name} n={result.n_windows} T={result.length}")
