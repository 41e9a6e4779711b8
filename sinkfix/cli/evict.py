"""``sinkfix evict``: KV-cache presses with and without sink protection on generated long-context tasks.

One dense prefill per prompt, then every press x ratio x protection on a pruned copy of its cache.
Progress is one line (or one bar step) per prompt. The sweep is stored as an experiment of kind
``evict`` (open it on the dashboard's Experiments page, Eviction tab, with ``?evict=ID``) and can be
printed as JSON; ``--dense-only`` checks first whether the model can do the task at all.
"""
from __future__ import annotations

import argparse
import sys

import torch

from sinkfix.cli.analyze import load_with_progress
from sinkfix.cli.common import write_json
from sinkfix.cli.owner import viewer_of
from sinkfix.errors import SettingsError
from sinkfix.experiments.evict import sweep
from sinkfix.experiments.evict.tasks import TASKS, prompts
from sinkfix.settings import DEFAULT_EPSILON
from sinkfix.progress import Progress
from sinkfix.store import Store


def _list(raw: str, what: str) -> list[str]:
    values = [part.strip() for part in raw.split(",") if part.strip()]
    if not values:
        raise SettingsError(f"give at least one value for {what}")
    return values


def _numbers(raw: str, what: str, kind: type) -> list:
    try:
        return [kind(part) for part in _list(raw, what)]
    except ValueError:
        noun = "whole numbers" if kind is int else "numbers"
        raise SettingsError(f"{what} must be comma-separated {noun}, got {raw!r}") from None


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evict", help="KV-cache eviction presses with sink protection on long-context tasks")
    parser.add_argument("--model", default="smollm2-135m", help="embedded name, hub id or local directory (causal LM)")
    parser.add_argument("--press", default=",".join(sweep.DEFAULT_PRESSES), help="comma-separated presses")
    parser.add_argument("--ratio", default="0.5,0.75", help="comma-separated fractions of the context's keys removed")
    parser.add_argument("--protect", default="none,first:4,detected", help="comma-separated: none, first:N, detected")
    parser.add_argument("--task", choices=list(TASKS), default="passkey")
    parser.add_argument("--lengths", default="1024,2048", help="comma-separated context lengths in tokens")
    parser.add_argument("--depths", default="0.1,0.3,0.5,0.7,0.9", help="comma-separated needle depths (fractions)")
    parser.add_argument("--seeds", type=int, default=sweep.DEFAULT_SEEDS, help="prompts per (length, depth)")
    parser.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, help="detected: sink threshold on alpha")
    parser.add_argument("--generate", action="store_true", help="score by greedy decoding instead of teacher forcing")
    parser.add_argument("--dense-only", action="store_true", help="only the dense cache's accuracy (is the task doable?)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--json", metavar="PATH|-", help="write the result JSON to PATH, or to stdout with -")
    parser.add_argument("--no-save", action="store_true", help="do not store the result in the run database")
    parser.set_defaults(handler=run_evict, fused=True)  # its analyses take --kernel


def settings_from(args: argparse.Namespace) -> sweep.SweepSettings:
    return sweep.SweepSettings(
        task=args.task, presses=tuple(_list(args.press, "--press")),
        ratios=tuple(_numbers(args.ratio, "--ratio", float)), protections=tuple(_list(args.protect, "--protect")),
        lengths=tuple(_numbers(args.lengths, "--lengths", int)), depths=tuple(_numbers(args.depths, "--depths", float)),
        seeds=args.seeds, generate=args.generate, epsilon=args.epsilon)


def run_evict(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.threads is not None:
        if args.threads < 1:
            raise SettingsError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    store = None if args.no_save or args.dense_only else Store()
    loaded = load_with_progress(args.model)
    bar = Progress()
    try:
        if args.dense_only:
            items = prompts(loaded.tokenizer, settings.task, settings.lengths, settings.depths, settings.seeds)
            rows = sweep.dense_outcomes(loaded, items, settings.generate, bar)
            data = {"kind": "evict-dense", "model": loaded.name, "task": settings.task, "prompts": rows}
        else:
            result = sweep.run_sweep(loaded, settings, bar)
            data = result.to_json()
    finally:
        bar.close()
    _print(data)
    if store is not None:
        label = (f"{data['model']} {settings.task} T={','.join(map(str, settings.lengths))} "
                 f"{len(data['prompts'])} prompts")
        data["id"] = store.save_experiment("evict", data, label, result.headline(), viewer=viewer_of(args))
        print(f"saved as experiment #{data['id']} in {store.path} (dashboard: Experiments, Eviction, ?evict={data['id']})",
              file=sys.stderr)
    if args.json:
        write_json(data, args.json)
    return 0


def _print(data: dict) -> None:
    """A short table on stderr: dense, then accuracy (or NLL change) per press, ratio and protection."""
    rows = data["prompts"]
    dense = [row["dense"] for row in rows]
    if dense and dense[0]["correct"] is not None:
        print(f"{data['model']}: {data['task']}, dense accuracy {sum(d['correct'] for d in dense)}/{len(dense)}",
              file=sys.stderr)
    else:
        print(f"{data['model']}: {data['task']}, dense NLL {sum(d['nll'] for d in dense) / max(1, len(dense)):.4f}",
              file=sys.stderr)
    for press, by_ratio in data.get("results", {}).items():
        for ratio, by_protect in by_ratio.items():
            cells = []
            for protect, cell in by_protect.items():
                if cell["accuracy"] is not None:
                    low, high = cell["accuracy"]["ci95"]
                    cells.append(f"{protect} {cell['accuracy']['mean']:.2f} [{low:.2f}, {high:.2f}]")
                else:
                    cells.append(f"{protect} dNLL {cell['nll_delta']['mean']:+.3f}")
            print(f"  {press:<10} {ratio:<5} " + "   ".join(cells), file=sys.stderr)
