"""``python -m sinkfix runs``: list, show, export, delete, share and unshare stored analyses.

Every action acts as ``--owner`` (default ``local``): it sees that owner's runs and runs shared with
them; a run it may not see answers "no run with id N", exactly as a missing one.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from sinkfix.analysis.display import show_token
from sinkfix.cli.common import write_json
from sinkfix.cli.owner import viewer_of
from sinkfix.errors import StoreError
from sinkfix.store import Store

TOKEN_COLUMNS = ["index", "token", "att_received", "value_norm", "sink_rate", "label"]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("runs", help="list, show, export, delete or share stored runs ($SINKFIX_DB)")
    actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))

    listing = actions.add_parser("list", help="stored runs, newest first")
    listing.add_argument("--json", action="store_true", help="print the rows as JSON")
    listing.add_argument("--model", help="only runs of this model")
    listing.add_argument("--search", metavar="TEXT", help="only runs whose text contains TEXT")
    listing.add_argument("--label", help="only runs with at least one token of this label")
    listing.add_argument("--since", help="only runs created at or after this ISO date/datetime (UTC)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="one run's settings, tokens and strongest sink heads")
    show.add_argument("id", type=int)
    show.set_defaults(handler=run_show)

    export = actions.add_parser("export", help="a run as the seed JSON (plus run_id) or the per-token CSV")
    export.add_argument("id", type=int)
    export.add_argument("--json", metavar="PATH|-", help="write the seed JSON to PATH, or to stdout with -")
    export.add_argument("--csv", metavar="PATH|-", help="write the per-token table to PATH, or to stdout with -")
    export.set_defaults(handler=run_export)

    delete = actions.add_parser("delete", help="delete one run")
    delete.add_argument("id", type=int)
    delete.set_defaults(handler=run_delete)

    for verb, shared in (("share", True), ("unshare", False)):
        what = "share one of your runs (or another stored row) with every visitor: they may read it, not change it" \
            if shared else "make a shared row of yours private again"
        sub = actions.add_parser(verb, help=what)
        sub.add_argument("id", nargs="?", type=int, help="the run id")
        kinds = sub.add_mutually_exclusive_group()
        kinds.add_argument("--experiment", type=int, metavar="ID", help="an experiment instead of a run")
        kinds.add_argument("--evaluation", type=int, metavar="ID", help="an evaluation instead of a run")
        kinds.add_argument("--corpus", metavar="NAME", help="a corpus (with all its runs) instead of a run")
        kinds.add_argument("--calibration", metavar="NAME", help="a calibration instead of a run")
        sub.set_defaults(handler=run_share, shared=shared)


def run_list(args: argparse.Namespace) -> int:
    store, viewer = Store(), viewer_of(args)
    where = {"model": args.model, "text_contains": args.search, "since": args.since, "label": args.label}
    rows = store.list(**where, limit=args.limit, viewer=viewer)
    if args.json:
        write_json(rows, "-")
        return 0
    total = store.count(**where, viewer=viewer)
    print(f"{'id':>6}  {'created_at (UTC)':<25} {'model':<14} {'T':>4} {'ben':>3} {'det':>3} {'neu':>4}  "
          f"{'owner':<12} text")
    for row in rows:
        text = " ".join(row["text"].split())
        text = text if len(text) <= 50 else text[:49] + "…"
        owner = row["owner"][:11] + ("*" if row["shared"] else "")
        print(f"{row['id']:>6}  {row['created_at']:<25} {row['model'][:14]:<14} {row['n_tokens']:>4} "
              f"{row['n_beneficial']:>3} {row['n_detrimental']:>3} {row['n_neutral']:>4}  {owner:<12} {text}")
    print("(* shared)", file=sys.stderr)
    print(f"{len(rows)} of {total} runs in {store.path}", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    store, viewer = Store(), viewer_of(args)
    run = store.get(args.id, viewer=viewer)
    owner = store.sharing("run", args.id, viewer=viewer)
    s = run.settings
    print(f"run #{run.run_id}  created {run.created_at}  SinkFix {run.version}  owner {owner['owner']}"
          f"{' (shared)' if owner['shared'] else ''}")
    print(f"model: {run.model_name} ({run.model_type}, {run.model_id}, fingerprint {run.fingerprint})")
    print(f"       {run.n_layers} layers x {run.n_heads} heads ({run.n_kv_heads} KV heads), "
          f"{'causal' if run.is_causal else 'bidirectional'}")
    print(f"settings: layer={s.layer} tau_att={s.tau_att} tau_norm={s.tau_norm} beta={s.beta} "
          f"epsilon={s.epsilon} map_token_limit={s.map_token_limit} max_tokens={s.max_tokens}  rule={run.rule}")
    print(f"maps: {'stored (float16)' if run.maps is not None else 'not kept (above the map limit)'}")
    for warning in run.warnings:
        print(f"warning: {warning}")
    print(f"text: {run.text}")
    print(f"\n{'#':>4} {'token':<16} {'att_recv':>9} {'v_norm':>7} {'sink_rate':>9}  label")
    for row in run.token_table():
        print(f"{row['index']:>4} {show_token(row['token'], 16):<16} {row['att_received']:>9.4f} {row['value_norm']:>7.3f} "
              f"{row['sink_rate']:>9.3f}  {row['label']}")
    heads = sorted(store.head_rows(args.id, viewer=viewer), key=lambda r: r["top_alpha"], reverse=True)[:5]
    print("\nstrongest sink heads (by alpha):")
    for row in heads:
        print(f"  layer {row['layer']:>2} head {row['head']:>2}: token {row['top_token']} "
              f"{show_token(row['top_token_text'])} alpha={row['top_alpha']:.3f} entropy={row['entropy']:.3f}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    if not args.json and not args.csv:
        raise StoreError("say what to export: --json PATH|- and/or --csv PATH|-")
    if args.json == "-" and args.csv == "-":
        raise StoreError("only one of --json and --csv can write to stdout (-)")
    run = Store().get(args.id, viewer=viewer_of(args))
    if args.json:
        write_json(run.to_seed_json(), args.json)
    if args.csv:
        write_csv(run.token_table(), args.csv)
    return 0


def write_csv(rows: list[dict], target: str) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TOKEN_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if target == "-":
        sys.stdout.write(buffer.getvalue())
        sys.stdout.flush()
    else:
        Path(target).write_text(buffer.getvalue(), encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)


def run_delete(args: argparse.Namespace) -> int:
    store = Store()
    store.delete(args.id, viewer=viewer_of(args))
    print(f"deleted run #{args.id} from {store.path}", file=sys.stderr)
    return 0


def run_share(args: argparse.Namespace) -> int:
    named = [(kind, getattr(args, kind)) for kind in ("experiment", "evaluation", "corpus", "calibration")
             if getattr(args, kind) is not None]
    if named and args.id is not None:
        raise StoreError("give a run id or one of --experiment, --evaluation, --corpus, --calibration, not both")
    kind, key = named[0] if named else ("run", args.id)
    if key is None:
        raise StoreError("say what to share: a run id, or --experiment ID, --evaluation ID, --corpus NAME, "
                         "--calibration NAME")
    store = Store()
    store.set_shared(kind, key, args.shared, viewer=viewer_of(args))
    state = "shared with every visitor (read-only for them)" if args.shared else "private again"
    print(f"{kind} {key} is now {state}", file=sys.stderr)
    return 0
