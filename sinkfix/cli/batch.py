"""``python -m sinkfix batch FILE`` (a corpus, resumable; local or Ray engine) and
``python -m sinkfix corpora list|show|delete|import``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinkfix.engines.common import KEEP, BatchResult
from sinkfix.engines.local import read_corpus, run_batch
from sinkfix.engines.parquet import import_corpus
from sinkfix.cli.common import write_json
from sinkfix.cli.analyze import add_settings_arguments, load_with_progress, settings_from
from sinkfix.analysis.corpus import CorpusSummary, format_summary, summarize_stored
from sinkfix.cli.owner import viewer_of
from sinkfix.policy.ownership import Viewer
from sinkfix.store import Store


def register(commands: argparse._SubParsersAction) -> None:
    batch = commands.add_parser(
        "batch", help="analyse every line of a corpus file (text or JSONL), resumably, and summarise it")
    batch.add_argument("file", help="text file with one input per line, or JSONL with a \"text\" field")
    add_settings_arguments(batch)
    batch.add_argument("--corpus", metavar="NAME", help="corpus name (default: the file name without extension)")
    batch.add_argument("--json", metavar="PATH|-", help="write the corpus summary and run ids as JSON (- = stdout)")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: batches in this process; ray: a Ray Data actor pool (this machine or --address)")
    batch.add_argument("--batch-size", type=int,
                       help="texts per forward pass (default: 8 on CPU, 32 on CUDA; ray: 16 per worker call)")
    batch.add_argument("--keep", choices=KEEP, default="summary",
                       help="summary (default): per-token/per-head rows only; maps: also the L x H x T x T maps "
                            "under the map limit (local engine)")
    batch.add_argument("--parquet", metavar="DIR", help="also write the per-text and per-head tables as Parquet shards")
    ray = batch.add_argument_group("ray engine")
    ray.add_argument("--address", help="join this Ray cluster: auto, HEAD_IP:PORT or ray://HEAD:10001 (docs/deployment.md); default: a new single-node Ray here, whatever RAY_ADDRESS says")
    ray.add_argument("--workers", type=int, default=2, help="actors, each holding one copy of the model (default 2)")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per actor (0 = CPU workers)")
    ray.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs (torch threads) per actor")
    batch.set_defaults(handler=run_batch_command, fused=True)  # its analyses take --kernel

    corpora = commands.add_parser("corpora", help="list, show or delete stored corpora ($SINKFIX_DB)")
    actions = corpora.add_subparsers(dest="action", required=True, parser_class=type(corpora))
    listing = actions.add_parser("list", help="stored corpora, newest first")
    listing.add_argument("--json", action="store_true", help="print the rows as JSON")
    listing.set_defaults(handler=run_list)
    show = actions.add_parser("show", help="a corpus's summary and its runs")
    show.add_argument("name")
    show.add_argument("--json", metavar="PATH|-", help="write the summary and run ids as JSON (- = stdout)")
    show.set_defaults(handler=run_show)
    delete = actions.add_parser("delete", help="forget a corpus (its runs stay in the history)")
    delete.add_argument("name")
    delete.set_defaults(handler=run_delete)
    load = actions.add_parser("import", help="load a folder written by batch --parquet as a corpus")
    load.add_argument("folder")
    load.add_argument("--corpus", metavar="NAME", help="corpus name (default: the one in the folder's corpus.json)")
    load.set_defaults(handler=run_import)


def run_batch_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)  # validate before the slow part
    lines = read_corpus(args.file)
    name = args.corpus or Path(args.file).stem
    store, viewer = Store(), viewer_of(args)  # a bad database fails before the model loads
    source = str(Path(args.file).resolve())
    if args.engine == "ray":
        from sinkfix.engines.ray_engine import DEFAULT_BATCH_SIZE, RayOptions, run_batch_ray

        options = RayOptions(args.address, args.workers, args.gpus_per_worker, args.cpus_per_worker,
                             args.batch_size or DEFAULT_BATCH_SIZE)
        result = run_batch_ray(lines, args.model, settings, store, name, options, source=source,
                               progress=not args.quiet, keep=args.keep, parquet=args.parquet, viewer=viewer)
    else:
        loaded = load_with_progress(args.model)
        result = run_batch(lines, loaded, settings, store, name, source=source, progress=not args.quiet,
                           batch_size=args.batch_size, keep=args.keep, parquet=args.parquet, viewer=viewer)
    _report(result, store, name, args.json, viewer)
    if args.parquet:
        print(f"Parquet shards in {args.parquet}", file=sys.stderr)
    return 0


def _report(result: BatchResult, store: Store, name: str, json_target: str | None, viewer: Viewer,
            verb: str = "analysed") -> None:
    print(f"{result.n_lines} lines: {result.analysed} {verb}, {result.cached} served from the store"
          + (f", {result.dropped} old lines dropped" if result.dropped else "")
          + f"; corpus '{name}' in {store.path}", file=sys.stderr)
    print(format_summary(result.summary, name), file=sys.stderr)
    if json_target:
        write_json(corpus_json(store, name, result.summary, viewer), json_target)


def run_import(args: argparse.Namespace) -> int:
    store, viewer = Store(), viewer_of(args)
    result = import_corpus(args.folder, store, args.corpus, viewer=viewer)
    _report(result, store, result.name, None, viewer, verb="imported")
    return 0


def corpus_json(store: Store, name: str, summary: CorpusSummary, viewer: Viewer) -> dict:
    corpus = store.corpus(name, viewer=viewer)
    runs = store.corpus_runs(corpus["id"], viewer=viewer)
    return {
        "corpus": name, "corpus_id": corpus["id"], "model": corpus["model"], "settings": corpus["settings"],
        "source": corpus["source"], "created_at": corpus["created_at"],
        "runs": [{"line_no": r["line_no"], "run_id": r["run_id"]} for r in runs],
        "summary": summary.to_dict(),
    }


def stored_summary(store: Store, corpus: dict, viewer: Viewer) -> CorpusSummary:
    """The stored summary, or (for a corpus whose batch was interrupted) one computed from its lines so far."""
    if corpus["summary"]:
        return CorpusSummary.from_json(corpus["summary"])
    return summarize_stored(store, corpus["id"], corpus["settings"]["epsilon"], viewer=viewer)


def run_list(args: argparse.Namespace) -> int:
    store = Store()
    rows = store.corpora(viewer=viewer_of(args))
    if args.json:
        write_json(rows, "-")
        return 0
    print(f"{'id':>4}  {'name':<24} {'model':<14} {'runs':>5}  {'created_at (UTC)':<25} source")
    for row in rows:
        print(f"{row['id']:>4}  {row['name'][:24]:<24} {row['model'][:14]:<14} {row['n_runs']:>5}  "
              f"{row['created_at']:<25} {row['source']}")
    print(f"{len(rows)} corpora in {store.path}", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    store, viewer = Store(), viewer_of(args)
    corpus = store.corpus(args.name, viewer=viewer)
    summary = stored_summary(store, corpus, viewer)
    if args.json:
        write_json(corpus_json(store, args.name, summary, viewer), args.json)
        return 0
    s = corpus["settings"]
    print(f"corpus '{corpus['name']}' (#{corpus['id']}), model {corpus['model']}, created {corpus['created_at']}, "
          f"owner {corpus['owner']}{' (shared)' if corpus['shared'] else ''}")
    print(f"source: {corpus['source']}")
    print(f"settings: layer={s['layer']} tau_att={s['tau_att']} tau_norm={s['tau_norm']} beta={s['beta']} "
          f"epsilon={s['epsilon']}")
    if not corpus["summary"]:
        print("note: the batch did not finish; this summary covers the lines stored so far")
    print(format_summary(summary, corpus["name"]))
    print(f"\n{'line':>6} {'run':>6} {'T':>4} {'det':>3}  text")
    for row in store.corpus_runs(corpus["id"], viewer=viewer):
        text = " ".join(row["text"].split())
        print(f"{row['line_no']:>6} {row['run_id']:>6} {row['n_tokens']:>4} {row['n_detrimental']:>3}  "
              f"{text if len(text) <= 60 else text[:59] + '…'}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    store = Store()
    store.delete_corpus(args.name, viewer=viewer_of(args))
    print(f"deleted corpus '{args.name}' from {store.path} (its runs are still in the history)", file=sys.stderr)
    return 0
