"""``python -m sinkfix analyze``: one text, one model, the seed JSON."""
from __future__ import annotations

import argparse
import contextvars
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sinkfix.analysis.display import show_token
from sinkfix.analysis.pipeline import Analysis, analyze
from sinkfix.cache import analyze_or_fetch
from sinkfix.capture.attention import blocking
from sinkfix.capture.fast_path import choosing
from sinkfix.cli.common import read_text_arg, write_json
from sinkfix.errors import SettingsError
from sinkfix.models import DEFAULT_MODEL, LoadedModel, get_model
from sinkfix.progress import Progress
from sinkfix.settings import (
    BOS_MODES,
    KERNELS,
    DEFAULT_BETA,
    DEFAULT_EPSILON,
    DEFAULT_MAP_TOKEN_LIMIT,
    DEFAULT_TAU_ATT,
    DEFAULT_TAU_NORM,
    AnalysisSettings,
)
from sinkfix.cli.owner import viewer_of
from sinkfix.store import Store


DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
# The --device and --dtype of the running command: load_with_progress reads them, so every command
# that loads a model honours them without passing them along by hand (see ``command_context``).
_placement: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("sinkfix_cli_placement",
                                                                              default=("auto", "auto"))


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the model runs and in which dtype; every command that loads a model has them."""
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when available, else the CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                        help="weights' dtype (auto: bfloat16 on CUDA, float32 on the CPU); "
                             "softmax and every reduction stay float32")


def add_query_block_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--query-block", type=int,
                        help="attention query rows per block (memory grows with block x T; default: automatic)")


def add_kernel_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kernel", choices=KERNELS, default="auto",
                        help="attention statistics: triton (fused kernels, CUDA), blocked (query blocks) or "
                             "auto (triton on CUDA where it covers the case, else blocked)")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The analysis settings, shared by every command that analyses text."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, hub id or local directory")
    add_device_arguments(parser)
    parser.add_argument("--layer", type=int, help="0-based layer for value norms (default: L // 2)")
    parser.add_argument("--tau-att", type=float, default=DEFAULT_TAU_ATT, help="att_received threshold")
    parser.add_argument("--tau-norm", type=float, default=DEFAULT_TAU_NORM, help="value_norm threshold")
    parser.add_argument("--beta", type=float, default=DEFAULT_BETA, help="share of sink attention kept")
    parser.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, help="sink-rate threshold on alpha")
    parser.add_argument("--map-limit", type=int, default=DEFAULT_MAP_TOKEN_LIMIT,
                        help="keep full L x H x T x T maps up to this many tokens")
    parser.add_argument("--max-tokens", type=int, help="truncate input to this many tokens")
    add_query_block_argument(parser)
    add_kernel_argument(parser)
    parser.add_argument("--bos", choices=BOS_MODES, default="auto",
                        help="auto: as the tokenizer does; always: prepend the model's BOS token; never: drop it")


def settings_from(args: argparse.Namespace) -> AnalysisSettings:
    return AnalysisSettings(
        layer=args.layer, tau_att=args.tau_att, tau_norm=args.tau_norm, beta=args.beta,
        epsilon=args.epsilon, map_token_limit=args.map_limit, max_tokens=args.max_tokens,
        query_block=args.query_block, bos=args.bos, kernel=args.kernel,
    )


def load_with_progress(name: str, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Load (or reuse) ``name`` with a stage indicator on stderr; device and dtype default to the
    running command's --device and --dtype."""
    chosen_device, chosen_dtype = _placement.get()
    with Progress() as progress:
        # get_model memoises per process, so in-process callers (tests, scripts) load once.
        return get_model(name, progress=progress.stage, device=device or chosen_device, dtype=dtype or chosen_dtype)


def add_model_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every command that loads a model --device, --dtype, --query-block and --kernel.

    --kernel triton is refused (``command_context``) by a command whose forwards never consult the
    kernel choice, that is every command but those that set ``fused=True``.

    A command loads a model when its --model has a default (filters such as ``runs list --model``
    have none). Commands that declare the options themselves keep their own.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_model_options_everywhere(sub)
    model = parser._option_string_actions.get("--model")
    if model is None or model.default is None:
        return
    if "--device" not in parser._option_string_actions:
        add_device_arguments(parser)
    if "--query-block" not in parser._option_string_actions:
        add_query_block_argument(parser)
    if "--kernel" not in parser._option_string_actions:
        add_kernel_argument(parser)
    if not parser.get_default("fused"):  # analyze, batch, evict and massive say fused=True
        parser.set_defaults(blocked_only=parser.prog)


@contextmanager
def command_context(args: argparse.Namespace) -> Iterator[None]:
    """Run a command with its --device/--dtype for model loads, its --query-block for every
    forward pass (analysis, evaluate, sts, calibrate all go through the same attention function)
    and its --kernel for every analysis (intervened forwards always run blocked)."""
    query_block = getattr(args, "query_block", None)
    if query_block is not None and query_block < 1:
        raise SettingsError(f"query_block must be a whole number >= 1, got {query_block}")
    blocked_only = getattr(args, "blocked_only", None)
    if blocked_only and getattr(args, "kernel", None) == "triton":
        # A forced kernel the command never consults would be silently ignored.
        raise SettingsError(f"'{blocked_only}' runs its forward passes on the blocked path only (its observers "
                            "are not wired to the fused kernels), so --kernel triton cannot run it; leave --kernel out")
    token = _placement.set((getattr(args, "device", None) or "auto", getattr(args, "dtype", None) or "auto"))
    try:
        with blocking(query_block), choosing(getattr(args, "kernel", None)):
            yield
    finally:
        _placement.reset(token)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("analyze", help="analyse one text and print the seed JSON")
    parser.add_argument("text", help="the text to analyse, or - to read stdin")
    add_settings_arguments(parser)
    parser.add_argument("--json", metavar="PATH|-", help="write the seed JSON to PATH, or to stdout with -")
    parser.add_argument("--no-save", action="store_true",
                        help="do not store the run (by default it is saved, and an identical request is served "
                             "from the store without running the model)")
    parser.set_defaults(handler=run, fused=True)  # its analyses take --kernel


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)  # validate before the slow part
    text = read_text_arg(args.text)
    from sinkfix.analysis.pipeline import validate_text

    validate_text(text)
    store = None if args.no_save else Store()  # a bad database fails before the model loads
    loaded = load_with_progress(args.model)
    with Progress(unit="layer") as bar:

        def progress(done: int, total: int) -> None:  # analyze() counts layers (a batch counts each once)
            bar(done, total, "layers")

        if store is None:
            result = analyze(text, loaded, settings, progress=progress)
        else:
            started = time.perf_counter()
            result, hit = analyze_or_fetch(text, loaded, settings, store, progress=progress, viewer=viewer_of(args))
    if store is None:
        print_summary(result)
    else:
        print_summary(result, served_s=time.perf_counter() - started if hit else None)
        if hit:
            print(f"run #{result.run_id}: an identical request was already stored; served it without "
                  f"a forward pass ({store.path})", file=sys.stderr)
        else:
            print(f"saved as run #{result.run_id} in {store.path}", file=sys.stderr)
    if args.json:
        write_json(result.to_seed_json(), args.json)
    return 0


def kernel_line(result: Analysis) -> str:
    """Which attention computation ran, and why not triton when it was wanted."""
    return result.kernel if result.kernel_reason is None else f"{result.kernel} (triton fell back: {result.kernel_reason})"


def print_summary(result: Analysis, served_s: float | None = None) -> None:
    """Human-readable, on stderr, so stdout stays clean JSON."""
    out = sys.stderr
    for warning in result.warnings:
        print(f"warning: {warning}", file=out)
    s = result.settings
    print(
        f"{result.model_name}: {result.n_tokens} tokens, {result.n_layers} layers x {result.n_heads} heads, "
        f"value norms at layer {s.layer}, tau_att={s.tau_att} tau_norm={s.tau_norm} beta={s.beta}",
        file=out,
    )
    print(f"kernel: {kernel_line(result)}", file=out)
    print(f"{'#':>4} {'token':<16} {'att_recv':>9} {'v_norm':>7} {'sink_rate':>9}  label", file=out)
    for row in result.token_table():
        print(
            f"{row['index']:>4} {show_token(row['token'], 16):<16} {row['att_received']:>9.4f} {row['value_norm']:>7.3f} "
            f"{row['sink_rate']:>9.3f}  {row['label']}",
            file=out,
        )
    if served_s is None:
        print(f"analysis took {result.timings.get('total_s', 0.0):.3f} s", file=out)
    else:
        print(f"served from the store in {served_s:.3f} s", file=out)
