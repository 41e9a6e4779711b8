"""``python -m sinkfix lab``: train small decoders with swappable attention and measure their sinks.

Progress goes to stderr (one bar over every step of every run); the summary table too; ``--json -``
prints the issue's JSON on stdout. The sweep is stored as one experiment of kind ``lab`` unless
``--no-save``. Interrupted runs continue from their last checkpoint when the same command is rerun.
"""
from __future__ import annotations

import argparse
import sys

from sinkfix.cli.common import write_json
from sinkfix.experiments.lab.settings import OPTIMIZERS, LabSettings
from sinkfix.experiments.lab.tasks import TASKS, TOKENIZERS
from sinkfix.experiments.lab.variants import VARIANTS, parse_variants
from sinkfix.cli.owner import viewer_of
from sinkfix.progress import Progress
from sinkfix.store import Store

KIND = "lab"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("lab", help="train tiny transformers with swappable attention and measure their sinks")
    parser.add_argument("--task", choices=TASKS, default="backcopy", help="Bigram-Backcopy or tinyshakespeare")
    parser.add_argument("--attention", default="softmax,relu",
                        help=f"comma-separated variants: {','.join(VARIANTS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (0 .. N-1)")
    parser.add_argument("--steps", type=int, help="training steps (default: 600 backcopy, 1200 text)")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per step")
    parser.add_argument("--layers", type=int, help="decoder layers (default: 1 backcopy, 2 text)")
    parser.add_argument("--hidden", type=int, help="model width d (default: 128 backcopy, 64 text)")
    parser.add_argument("--heads", type=int, help="attention heads per layer (default: 1 backcopy, 2 text)")
    parser.add_argument("--length", type=int, help="task tokens per sequence after the registers and <s> "
                        "(default: 32 backcopy, 64 text)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    parser.add_argument("--lr", type=float, help="learning rate (default: AdamW 5e-3 backcopy, 1e-2 text; SGD 3e-2)")
    parser.add_argument("--weight-decay", type=float, help="weight decay (default: 1e-4 backcopy, 0.1 text)")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: 100 backcopy, 200 text)")
    parser.add_argument("--registers", type=int, default=4, help="tokens the registers variant prepends")
    parser.add_argument("--tokenizer", choices=TOKENIZERS, default="char", help="text task: characters or SmolLM2's")
    parser.add_argument("--text-file", help="text task: the UTF-8 file (default: tinyshakespeare.txt in SINKFIX_DATA)")
    parser.add_argument("--device", default="auto", help="auto (a CUDA GPU when there is one), cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads while training (default 1: these models are too small to gain from more)")
    parser.add_argument("--runs-dir", help="where runs and their models are kept (default: cache/lab/runs)")
    parser.add_argument("--json", metavar="PATH|-", help="write the result JSON to PATH, or to stdout with -")
    parser.add_argument("--no-save", action="store_true", help="do not store the sweep in the run database")
    parser.set_defaults(handler=run)


def settings_from(args: argparse.Namespace) -> LabSettings:
    return LabSettings(
        task=args.task, variants=parse_variants(args.attention), seeds=args.seeds, steps=args.steps,
        batch_size=args.batch_size, layers=args.layers, hidden=args.hidden, heads=args.heads, length=args.length,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, checkpoint_every=args.checkpoint_every,
        registers=args.registers,
        tokenizer=args.tokenizer, text_file=args.text_file, device=args.device, threads=args.threads,
    ).resolved()


def _ci(entry: dict | None, scale: float = 1.0, digits: int = 3) -> str:
    if entry is None:
        return "-"
    low, high = entry["ci95"]
    return f"{scale * entry['mean']:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def print_summary(data: dict, runs: list[dict]) -> None:
    from sinkfix.experiments.lab.summary import SUMMARY_METRICS, extra

    print("95% CI over seeds (Student's t); Sink_1 and first-token mass of token index 0", file=sys.stderr)
    for variant, metrics in data["variants"].items():
        parts = [f"{name} {_ci(metrics[name])}" for name in SUMMARY_METRICS]
        names = ["learned_sink_mass", "massive_on_token0"]
        if variant == "registers":  # with registers token 0 is a register; <s> comes after them
            names += ["register_share", "first_content_mass"]
        for name in names:
            entry = extra(runs, variant, name)
            if entry is not None:
                parts.append(f"{name} {_ci(entry)}")
        print(f"  {variant:<10} " + "; ".join(parts), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    # Imported here: training pulls in transformers' model classes, seconds every CLI command would pay.
    from sinkfix.experiments.lab.runner import run_lab

    settings = settings_from(args)
    store = None if args.no_save else Store()
    bar = Progress()
    try:
        result = run_lab(settings, root=args.runs_dir, progress=bar)
    finally:
        bar.close()
    data = result.to_json()
    print_summary(data, result.runs)
    print("models: " + ", ".join(sorted({run["model_dir"] for run in result.runs})[:2])
          + (" ..." if len(result.runs) > 2 else ""), file=sys.stderr)
    if store is not None:
        experiment_id = store.save_experiment(KIND, data, result.label(), result.headline(), model=f"lab/{settings.task}",
                                                  viewer=viewer_of(args))
        print(f"saved as experiment #{experiment_id} in {store.path}", file=sys.stderr)
    if args.json:
        write_json(data, args.json)
    return 0
