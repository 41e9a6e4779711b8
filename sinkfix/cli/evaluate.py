"""``python -m sinkfix evaluate | sts | calibrate``: measure an in-forward intervention."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sinkfix.analysis.display import show_token
from sinkfix.experiments import calibrate
from sinkfix.cli.common import write_json
from sinkfix.cli.analyze import load_with_progress
from sinkfix.errors import InputError
from sinkfix.experiments.evaluate import DEFAULT_MAX_TOKENS, evaluate, sweep
from sinkfix.experiments.token_evidence import token_evidence
from sinkfix.experiments.intervene import Intervention, parse_layers
from sinkfix.models import DEFAULT_MODEL
from sinkfix.progress import Progress
from sinkfix.settings import DEFAULT_BETA, DEFAULT_TAU_ATT, DEFAULT_TAU_NORM
from sinkfix.cli.owner import viewer_of
from sinkfix.store import Store
from sinkfix.experiments.sts import load_sts, sts

TARGET_HELP = "detrimental | first | random | tokens:I,J (token 0 only by name: first, or tokens:first,...)"


def _intervention_arguments(parser: argparse.ArgumentParser, target_default: str | None) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, hub id or local directory")
    parser.add_argument("--target", default=target_default, help=TARGET_HELP)
    parser.add_argument("--beta", type=float, default=DEFAULT_BETA, help="share of the target's attention kept (1 = no change)")
    parser.add_argument("--layers", help="layers to edit: A-B, or a list like 0,2-4 (default: all)")
    parser.add_argument("--heads", help="heads to edit: L:H,L:H,... or @name for a stored calibration (default: all)")
    parser.add_argument("--match", default="detrimental", help="the target whose mass --target random imitates")
    parser.add_argument("--tau-att", type=float, default=DEFAULT_TAU_ATT, help="seed rule: att_received threshold")
    parser.add_argument("--tau-norm", type=float, default=DEFAULT_TAU_NORM, help="seed rule: value_norm threshold")
    parser.add_argument("--layer", type=int, help="layer whose value norms feed the seed rule (default: L // 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random control")
    parser.add_argument("--json", metavar="PATH|-", help="write the result JSON to PATH, or to stdout with -")
    parser.add_argument("--no-save", action="store_true", help="do not store the result in the run database")


def _intervention(args: argparse.Namespace, model_name: str | None = None) -> Intervention:
    return Intervention(
        target=args.target, beta=args.beta, layers=parse_layers(args.layers),
        heads=calibrate.resolve_heads(args.heads, model_name, viewer=viewer_of(args)), tau_att=args.tau_att, tau_norm=args.tau_norm,
        norm_layer=args.layer, match=args.match, seed=args.seed,
    )


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="how an intervention changes a model's outputs on texts")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a text to evaluate (repeat for several)")
    source.add_argument("--text-file", action="append", help="a UTF-8 file holding one text (repeat for several)")
    _intervention_arguments(parser, "detrimental")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="split texts into chunks of this many tokens")
    parser.add_argument("--sweep", action="store_true", help="also sweep beta from 1 to 0, beside the random and first controls")
    parser.add_argument("--evidence", action="store_true", help="also redistribute each candidate sink alone (first text)")
    parser.set_defaults(handler=run_evaluate)

    parser = commands.add_parser("sts", help="STS Benchmark Spearman, with and without an intervention")
    parser.add_argument("--data", required=True, help="sts-test.csv / sts-dev.csv, or the folder holding them")
    parser.add_argument("--split", default="test", choices=("test", "dev"), help="which file when --data is a folder")
    parser.add_argument("--limit", type=int, help="use only the first N pairs")
    _intervention_arguments(parser, None)
    parser.set_defaults(handler=run_sts)

    parser = commands.add_parser("evaluations", help="stored evaluate/sts results, newest first ($SINKFIX_DB)")
    parser.add_argument("--model", help="only this model")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print the full stored results as JSON")
    parser.set_defaults(handler=run_list_evaluations)

    parser = commands.add_parser("calibrations", help="stored head sets from calibrate ($SINKFIX_DB)")
    parser.add_argument("--model", help="only this model")
    parser.add_argument("--json", action="store_true", help="print the stored rows as JSON")
    parser.set_defaults(handler=run_list_calibrations)

    parser = commands.add_parser("calibrate", help="ACT-style head search on a dev split, checked on a held-out one")
    parser.add_argument("--task", choices=("sts", "nll"), help="sts (Spearman) or nll (LM); default: by model")
    parser.add_argument("--data", required=True, help="sts: the STS-B folder; nll: a text file (dev and held-out parts are disjoint)")
    parser.add_argument("--dev-pairs", type=int, default=500, help="sts: dev pairs to search on (a fixed random subset)")
    parser.add_argument("--limit", type=int, help="sts: use only the first N held-out (test) pairs")
    parser.add_argument("--dev-chars", type=int, default=2000, help="nll: characters from the start of the file to search on")
    parser.add_argument("--heldout-chars", type=int, default=8000, help="nll: characters from the middle of the file to check on")
    parser.add_argument("--max-tokens", type=int, default=256, help="nll: chunk length in tokens")
    parser.add_argument("--max-heads", type=int, help="search only the K heads where the target receives most attention")
    parser.add_argument("--min-gain", type=float, default=0.0, help="keep a head only if it improves the dev metric by more")
    parser.add_argument("--name", help="store the kept heads under this name, for --heads @NAME")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: trials one after another; ray: one Ray task per head on model-holding actors")
    parser.add_argument("--address", help="ray: join this cluster (auto, HEAD_IP:PORT or ray://HEAD:10001); default: a new single-node Ray here")
    parser.add_argument("--workers", type=int, default=2, help="ray: actors, each holding the model (default 2)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="ray: GPUs per actor")
    _intervention_arguments(parser, "detrimental")
    parser.set_defaults(handler=run_calibrate)


def _read_texts(args: argparse.Namespace) -> list[str]:
    if args.text:
        return [sys.stdin.read() if t == "-" else t for t in args.text]
    texts = []
    for name in args.text_file:
        path = Path(name)
        if not path.is_file():
            raise InputError(f"text file not found: {name}")
        texts.append(path.read_text(encoding="utf-8"))
    return texts


def run_evaluate(args: argparse.Namespace) -> int:
    intervention = _intervention(args)  # validate before the slow part
    texts = _read_texts(args)
    loaded = load_with_progress(args.model)
    _check_heads_model(args, loaded.name)
    with Progress() as progress:
        result = evaluate(loaded, texts, intervention, args.max_tokens, progress=progress)
    out = result.to_json()
    _print_evaluation(out)
    if args.sweep:
        with Progress() as progress:
            points = sweep(loaded, texts, intervention, max_tokens=args.max_tokens, progress=progress)
        out["sweep"] = [p.to_json() for p in points]
        for point in out["sweep"]:
            print(f"  sweep {point['arm']:<6} beta={point['beta']:.1f} {_metrics(point)}", file=sys.stderr)
    if args.evidence:
        with Progress() as progress:
            rows = token_evidence(loaded, texts[0], intervention, max_tokens=args.max_tokens, progress=progress)
        out["token_evidence"] = [r.to_json() for r in rows]
        for r in rows:
            print(f"  token {r.index:>4} {show_token(r.token, 14):<14} att={r.att_received:.3f} seed={r.seed_label:<11} "
                  f"evidence={r.evidence_label} {_metrics(r.to_json())}", file=sys.stderr)
    if not args.no_save:
        _save("evaluate", out, args)
    if args.json:
        write_json(out, args.json)
    return 0


def _check_heads_model(args: argparse.Namespace, model_name: str) -> None:
    if args.heads and args.heads.strip().startswith("@"):
        calibrate.resolve_heads(args.heads, model_name, viewer=viewer_of(args))


def _metrics(row: dict) -> str:
    parts = []
    for key, fmt in (("delta_nll", "+.4f"), ("kl_mean", ".4f"), ("top1_agreement", ".3f"), ("cosine_mean", ".4f")):
        if row.get(key) is not None:
            parts.append(f"{key}={row[key]:{fmt}}")
    return " ".join(parts)


def _print_evaluation(out: dict) -> None:
    targets = sum(len(t) for t in out["target_tokens"])
    print(f"{out['model']}: target {out['target']} beta={out['beta']:g}, {out['n_chunks']} chunk(s), "
          f"{out['n_positions']} positions, {targets} target token(s)", file=sys.stderr)
    if out["baseline_nll"] is not None:
        low, high = out["delta_nll_ci95"]
        print(f"  NLL {out['baseline_nll']:.4f} -> {out['intervened_nll']:.4f} nats "
              f"(change {out['delta_nll']:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}] over {out['ci_unit']}s)", file=sys.stderr)
        print(f"  KL {out['kl_mean']:.4f} nats, top-1 agreement {out['top1_agreement']:.3f}", file=sys.stderr)
    else:
        print("  no LM head: NLL, KL and top-1 are not defined", file=sys.stderr)
    print(f"  cosine of final hidden states {out['cosine_mean']:.4f}", file=sys.stderr)


def run_sts(args: argparse.Namespace) -> int:
    intervention = None if args.target is None else _intervention(args)
    data = load_sts(args.data, args.split, args.limit)
    loaded = load_with_progress(args.model)
    _check_heads_model(args, loaded.name)
    with Progress() as progress:
        result = sts(loaded, data, intervention, progress=progress)
    out = result.to_json() | {"model": loaded.name}
    print(f"{loaded.name}: STS-B {args.split}, {result.n_pairs} pairs, baseline Spearman {result.baseline_spearman:.4f}",
          file=sys.stderr)
    if result.intervened_spearman is not None:
        low, high = result.delta_ci
        print(f"  {intervention.label()}: Spearman {result.intervened_spearman:.4f} (change {result.delta:+.4f}, "
              f"95% CI [{low:+.4f}, {high:+.4f}]); {result.sentences_with_targets} of {result.n_sentences} sentences "
              "had target tokens", file=sys.stderr)
    if intervention is not None and not args.no_save:
        _save("sts", out, args)
    if args.json:
        write_json(out, args.json)
    return 0


def _save(kind: str, result: dict, args: argparse.Namespace) -> None:
    store = Store()
    evaluation_id = store.save_evaluation(kind, result, viewer=viewer_of(args))
    print(f"stored as evaluation {evaluation_id} in {store.path}", file=sys.stderr)


def run_calibrate(args: argparse.Namespace) -> int:
    intervention = _intervention(args)
    loaded = load_with_progress(args.model)
    task = args.task or ("nll" if loaded.lm_kind is not None else "sts")
    if task == "sts":
        dev_all = load_sts(args.data, "dev")
        picks = np.random.default_rng(args.seed).choice(len(dev_all), size=min(args.dev_pairs, len(dev_all)), replace=False)
        dev = dev_all.subset(sorted(picks.tolist()))
        test = load_sts(args.data, "test", args.limit)
        with Progress() as progress:
            result = calibrate.calibrate_sts(loaded, dev, test, intervention, args.max_heads, args.min_gain,
                                             progress=progress, scorer=_scorer(args, "sts", dev, intervention, progress))
    else:
        path = Path(args.data)
        if not path.is_file():
            raise InputError(f"text file not found: {args.data}")
        text = path.read_text(encoding="utf-8")
        middle = len(text) // 2
        if args.dev_chars > middle:
            raise InputError(f"--dev-chars {args.dev_chars} would overlap the held-out part, which starts at character {middle}")
        dev_texts = [text[: args.dev_chars]]
        with Progress() as progress:
            result = calibrate.calibrate_nll(loaded, dev_texts, [text[middle : middle + args.heldout_chars]],
                                             intervention, args.max_tokens, args.max_heads, args.min_gain,
                                             progress=progress, scorer=_scorer(args, "nll", dev_texts, intervention,
                                                                               progress))
    out = result.to_json()
    _print_calibration(out)
    if args.name:
        out["name"] = args.name
        calibrate.save(result, args.name, viewer=viewer_of(args))
        print(f"stored the kept heads as @{args.name}", file=sys.stderr)
    if args.json:
        write_json(out, args.json)
    return 0


def _scorer(args: argparse.Namespace, task: str, dev, intervention: Intervention, progress: Progress):
    """None for the local engine; else the Ray scorer (one task per head)."""
    if args.engine != "ray":
        return None
    from sinkfix.engines.ray_calibrate import ray_scorer
    from sinkfix.engines.ray_engine import RayOptions

    options = RayOptions(args.address, args.workers, args.gpus_per_worker)
    return ray_scorer(args.model, task, dev, intervention, options, max_tokens=args.max_tokens, progress=progress)


def _print_calibration(out: dict) -> None:
    print(f"{out['model']}: searched {out['n_tried']} heads on {out['dev_size']} dev "
          f"{'pairs' if out['task'] == 'sts' else 'positions'} in {out['seconds']:.0f} s; "
          f"dev baseline {out['metric']} {out['dev_baseline']:.4f}; kept {len(out['kept_heads'])} heads", file=sys.stderr)
    for note in out["notes"]:
        print(f"  note: {note}", file=sys.stderr)
    for arm, row in out["heldout"].items():
        if out["task"] == "sts":
            low, high = row["delta_ci95"]
            print(f"  held-out {arm:<6} Spearman {row['intervened_spearman']:.4f} (change {row['delta_spearman']:+.4f}, "
                  f"95% CI [{low:+.4f}, {high:+.4f}])", file=sys.stderr)
        else:
            low, high = row["delta_nll_ci95"]
            print(f"  held-out {arm:<6} NLL change {row['delta_nll']:+.4f} (95% CI [{low:+.4f}, {high:+.4f}]), "
                  f"KL {row['kl_mean']:.4f}, top-1 {row['top1_agreement']:.3f}", file=sys.stderr)


def run_list_evaluations(args: argparse.Namespace) -> int:
    rows = Store().evaluations(model=args.model, limit=args.limit, viewer=viewer_of(args))
    if args.json:
        write_json(rows, "-")
        return 0
    print(f"{'id':>4}  {'created_at (UTC)':<25} {'kind':<8} {'model':<14} {'target':<14} {'beta':>4} "
          f"{'baseline':>9} {'intervened':>10} {'delta':>9}  95% CI")
    for row in rows:
        ci = "" if row["ci_low"] is None else f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
        print(f"{row['id']:>4}  {row['created_at']:<25} {row['kind']:<8} {row['model'][:14]:<14} "
              f"{row['target'][:14]:<14} {row['beta']:>4.2f} {_number(row['baseline']):>9} "
              f"{_number(row['intervened']):>10} {_number(row['delta']):>9}  {ci}")
    print(f"{len(rows)} evaluations", file=sys.stderr)
    return 0


def run_list_calibrations(args: argparse.Namespace) -> int:
    rows = Store().calibrations(model=args.model, viewer=viewer_of(args))
    if args.json:
        write_json(rows, "-")
        return 0
    print(f"{'name':<24} {'created_at (UTC)':<25} {'model':<14} {'task':<5} {'heads':>5} {'dev base':>9} {'held-out Δ':>10}")
    for row in rows:
        print(f"{row['name'][:24]:<24} {row['created_at']:<25} {row['model'][:14]:<14} {row['task']:<5} "
              f"{len(row['kept_heads']):>5} {_number(row['dev_baseline']):>9} {_number(row['heldout_delta']):>10}")
    print(f"{len(rows)} calibrations", file=sys.stderr)
    return 0


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
