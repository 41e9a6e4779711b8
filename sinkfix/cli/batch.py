"""``python -m sinkfix batch FILE`` (a corpus, resumable) and ``python -m sinkfix corpora list|show|delete``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinkfix.engines.local import read_corpus, run_batch
from sinkfix.cli.common import write_json
from sinkfix.cli.analyze import add_settings_arguments, load_with_progress, settings_from
from sinkfix.analysis.corpus import CorpusSummary, format_summary, summarize_stored
from sinkfix.store import Store


def register(commands: argparse._SubParsersAction) -> None:
    batch = commands.add_parser(
        "batch", help="analyse every line of a corpus file (text or JSONL), resumably, and summarise it")
    batch.add_argument("file", help="text file with one input per line, or JSONL with a \"text\" field")
    add_settings_arguments(batch)
    batch.add_argument("--corpus", metavar="NAME", help="corpus name (default: the file name without extension)")
    batch.add_argument("--json", metavar="PATH|-", help="write the corpus summary and run ids as JSON (- = stdout)")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.set_defaults(handler=run_batch_command)

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


def run_batch_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)  # validate before the slow part
    lines = read_corpus(args.file)
    name = args.corpus or Path(args.file).stem
    store = Store()  # a bad database fails before the model loads
    loaded = load_with_progress(args.model)
    result = run_batch(lines, loaded, settings, store, name, source=str(Path(args.file).resolve()),
                       progress=not args.quiet)
    print(f"{result.n_lines} lines: {result.analysed} analysed, {result.cached} served from the store"
          + (f", {result.dropped} old lines dropped" if result.dropped else "")
          + f"; corpus '{name}' in {store.path}", file=sys.stderr)
    print(format_summary(result.summary, name), file=sys.stderr)
    if args.json:
        write_json(corpus_json(store, name, result.summary), args.json)
    return 0


def corpus_json(store: Store, name: str, summary: CorpusSummary) -> dict:
    corpus = store.corpus(name)
    runs = store.corpus_runs(corpus["id"])
    return {
        "corpus": name, "corpus_id": corpus["id"], "model": corpus["model"], "settings": corpus["settings"],
        "source": corpus["source"], "created_at": corpus["created_at"],
        "runs": [{"line_no": r["line_no"], "run_id": r["run_id"]} for r in runs],
        "summary": summary.to_dict(),
    }


def stored_summary(store: Store, corpus: dict) -> CorpusSummary:
    """The stored summary, or (for a corpus whose batch was interrupted) one computed from its lines so far."""
    if corpus["summary"]:
        return CorpusSummary.from_json(corpus["summary"])
    return summarize_stored(store, corpus["id"], corpus["settings"]["epsilon"])


def run_list(args: argparse.Namespace) -> int:
    store = Store()
    rows = store.corpora()
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
    store = Store()
    corpus = store.corpus(args.name)
    summary = stored_summary(store, corpus)
    if args.json:
        write_json(corpus_json(store, args.name, summary), args.json)
        return 0
    s = corpus["settings"]
    print(f"corpus '{corpus['name']}' (#{corpus['id']}), model {corpus['model']}, created {corpus['created_at']}")
    print(f"source: {corpus['source']}")
    print(f"settings: layer={s['layer']} tau_att={s['tau_att']} tau_norm={s['tau_norm']} beta={s['beta']} "
          f"epsilon={s['epsilon']}")
    if not corpus["summary"]:
        print("note: the batch did not finish; this summary covers the lines stored so far")
    print(format_summary(summary, corpus["name"]))
    print(f"\n{'line':>6} {'run':>6} {'T':>4} {'det':>3}  text")
    for row in store.corpus_runs(corpus["id"]):
        text = " ".join(row["text"].split())
        print(f"{row['line_no']:>6} {row['run_id']:>6} {row['n_tokens']:>4} {row['n_detrimental']:>3}  "
              f"{text if len(text) <= 60 else text[:59] + '…'}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    store = Store()
    store.delete_corpus(args.name)
    print(f"deleted corpus '{args.name}' from {store.path} (its runs are still in the history)", file=sys.stderr)
    return 0
