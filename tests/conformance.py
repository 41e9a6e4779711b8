"""Conformance of SinkFix's attention function, one architecture at a time.

For every architecture transformers registers for causal or masked language modelling, build a
tiny random model (2 layers, small widths, query/key weights scaled up so that soft-capping and
learned sink logits really change the result), save it with an offline tokenizer, load it with
``sinkfix.load_model`` and compare against the same weights under transformers' own eager
attention. Used by ``tests/integration/test_conformance.py`` and ``benchmarks/conformance.py``.

Each architecture ends in one state:
- ``exact``: the outputs and ``att_received`` equal eager's within ``TOLERANCE`` (float32);
- ``refused``: ``load_model`` raised a SinkFixError with a one-line message;
- ``skipped``: no tiny model could be built or saved (the reason is kept);
- ``different``: SinkFix loaded the model but its numbers differ from eager's. Must never occur;
- ``error``: SinkFix loaded the model, then crashed or raised something other than a SinkFixError.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from tests.tiny_configs import UPSTREAM, tiny_config
from tests.tiny_models import _tokenizer

TOLERANCE = 1e-5
TEXT = "the cat sat on the mat . hello world"
MAX_PARAMETERS = 20_000_000
SCALE_QK = 3.0  # with initializer_range 0.2: logits of several units, where tanh(x / 2) is far from x
QK_NAMES = ("q_proj", "k_proj", "query", "key", "qkv", "c_attn", "Wqkv", "query_key_value", "q_a_proj", "q_b_proj",
            "kv_a_proj", "kv_b_proj", "q_lin", "k_lin", "in_proj")


@dataclass(frozen=True)
class Architecture:
    model_type: str
    class_name: str
    kind: str  # "causal" or "masked"


@dataclass(frozen=True)
class Outcome:
    architecture: Architecture
    state: str  # exact, refused, skipped, different
    reason: str = ""
    output_diff: float | None = None
    received_diff: float | None = None
    learned_sink_mass: float | None = None
    adapter: str = ""  # W_O adapter: "checked", "none (contribution null)", "WRONG"
    attention_layers: str = ""  # "all", or a hybrid's "1, 3 of 4"
    gate: str = ""  # the attention output gate read per head (capture.gates layout), "" without one


def architectures() -> list[Architecture]:
    """Masked-LM classes for encoders, causal-LM classes for the rest, one per model type."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    found = {t: Architecture(t, c, "masked") for t, c in MODEL_FOR_MASKED_LM_MAPPING_NAMES.items()}
    for model_type, class_name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items():
        found.setdefault(model_type, Architecture(model_type, class_name, "causal"))
    return [found[t] for t in sorted(found)]


def by_type(model_type: str) -> Architecture:
    return next(a for a in architectures() if a.model_type == model_type)


def build(arch: Architecture, target: Path) -> None:
    """Build, scale and save the tiny model and its tokenizer; raises when the config will not build."""
    import transformers

    model_class = getattr(transformers, arch.class_name)
    config = tiny_config(arch.model_type, model_class)
    with torch.device("meta"):  # count first: a sub-config left at full size would take gigabytes
        size = sum(p.numel() for p in model_class(config).parameters())
    if size > MAX_PARAMETERS:
        raise ValueError(f"the smallest config built here still has {size / 1e6:.0f}M parameters")
    torch.manual_seed(0)
    config._attn_implementation = "eager"
    model = model_class(config).float().eval()
    _smoke_forward(model.base_model)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            leaf = name.rsplit(".", 2)[-2] if name.count(".") >= 1 else name
            if parameter.dim() >= 2 and any(leaf == n or leaf.endswith(n) for n in QK_NAMES):
                parameter.mul_(SCALE_QK)
            if name.endswith("sinks"):
                parameter.normal_(0.0, 2.0)  # learned sink logits of the size a trained gpt-oss has
    model.save_pretrained(target)
    _tokenizer(arch.kind == "masked").save_pretrained(target)


def _smoke_forward(base: torch.nn.Module) -> None:
    """A tiny config its own eager attention cannot run on text is not a test of SinkFix. A model that
    takes no token ids (Perceiver) is left to SinkFix, which refuses it; no KV cache is built, as in
    an analysis (BLT's own cache cannot be built from its composite config)."""
    accepted = inspect.signature(base.forward).parameters
    if "input_ids" not in accepted:
        return
    extra = {"use_cache": False} if "use_cache" in accepted else {}
    with torch.inference_mode():
        base(input_ids=torch.tensor([[5, 7, 8, 9, 10, 11, 12, 13]]), **extra)


def check(arch: Architecture, workdir: Path | None = None) -> Outcome:
    """Build, load through SinkFix and compare with eager; never raises."""
    with tempfile.TemporaryDirectory(dir=workdir) as folder, warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        target = Path(folder) / arch.model_type
        try:
            build(arch, target)
        except Exception as error:  # noqa: BLE001 - any failure to build is a reason to skip
            cause = UPSTREAM.get(arch.model_type)
            if cause is not None:
                return Outcome(arch, "skipped", f"upstream: {cause} ({_line(error)[:120]})")
            return Outcome(arch, "skipped", f"tiny config does not build: {_line(error)}")
        try:
            return _compare(arch, target)
        except Exception as error:  # noqa: BLE001 - a crash after loading: reported, and the test fails on it
            return Outcome(arch, "error", f"{type(error).__name__}: {_line(error)}")


def _compare(arch: Architecture, target: Path) -> Outcome:
    import sinkfix
    from sinkfix.errors import SinkFixError

    try:
        loaded = sinkfix.load_model(str(target))
    except SinkFixError as error:
        return Outcome(arch, "refused", _line(error).replace(str(target), arch.model_type))
    analysis = sinkfix.analyze(TEXT, loaded)
    ids = torch.tensor([analysis.token_ids])
    base = loaded.model.base_model
    with torch.inference_mode():
        ours = _hidden(base(input_ids=ids))
        loaded.model.set_attn_implementation("eager")
        try:
            eager = base(input_ids=ids, output_attentions=True)
        finally:
            loaded.model.set_attn_implementation("sinkfix")
    attentions = [a for a in (eager.attentions or ()) if a is not None]
    if loaded.attention_layers is not None and len(attentions) == loaded.n_layers:
        # MiniMax returns weights from its linear-attention layers too: keep the softmax layers'
        attentions = [attentions[layer] for layer in loaded.attention_layers]
    if len(attentions) != len(loaded.layer_numbers):  # a hybrid returns maps of its attention layers only
        return Outcome(arch, "different", f"eager returned {len(attentions)} attention maps for "
                                          f"{len(loaded.layer_numbers)} attention layers")
    maps = torch.stack(attentions)[:, 0].float()  # [L, H, T, T]
    note = ""
    if analysis.learned_sink_mass is not None and torch.allclose(maps.sum(dim=-1), torch.ones(()), atol=1e-5):
        # Granite's sliding-window variants: eager returns the maps renormalised over the real tokens
        # and scales its output by 1 - sink instead. The real-token share is then eager's map times
        # 1 - sink (per row, from SinkFix); the output comparison checks those sink rows.
        ours_maps, ours_sink = _our_maps(loaded, ids)
        renormalised = ours_maps / ours_maps.sum(dim=-1, keepdim=True)
        if not torch.allclose(renormalised, maps, atol=TOLERANCE, rtol=0):
            return Outcome(arch, "different", "maps renormalised over real tokens differ from eager's")
        maps = maps * (1 - ours_sink)[..., None]
        note = "eager returns maps renormalised over real tokens and scales its output by 1 - sink; equal after that"
    expected = maps.mean(dim=(0, 1)).mean(dim=0)
    output_diff = float((ours.float() - _hidden(eager).float()).abs().max())
    received_diff = float((torch.from_numpy(analysis.att_received) - expected).abs().max())
    sink = None if analysis.learned_sink_mass is None else float(analysis.learned_sink_mass.mean())
    expected_sink = float(1 - maps.sum(dim=-1).mean())
    sink_diff = abs((sink or 0.0) - expected_sink)
    adapter = _adapter_state(loaded, ids)
    worst = max(output_diff, received_diff, sink_diff)
    layers = "all" if loaded.attention_layers is None else (
        f"{', '.join(map(str, loaded.attention_layers))} of {loaded.n_layers}")
    gate = "" if loaded.gates is None else loaded.gates.layout
    if not worst <= TOLERANCE or adapter == "WRONG":
        reason = f"outputs {output_diff:.2g}, att_received {received_diff:.2g}, sink mass {sink_diff:.2g}, adapter {adapter}"
        return Outcome(arch, "different", reason, output_diff, received_diff, sink, adapter, layers, gate)
    return Outcome(arch, "exact", note, output_diff, received_diff, sink, adapter, layers, gate)


def _our_maps(loaded, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SinkFix's own per-layer maps [L, H, T, T] and learned-sink rows [L, H, T]."""
    from sinkfix.capture import attention as capture

    maps: dict[int, torch.Tensor] = {}
    sinks: dict[int, torch.Tensor] = {}

    class Keep:
        def observe(self, layer, probs, value, scores, start=0, sink_mass=None):
            maps[layer], sinks[layer] = probs[0].float(), sink_mass[0].float()

    with torch.inference_mode(), capture.observing(Keep()):
        loaded.base(input_ids=ids)
    return torch.stack([maps[i] for i in sorted(maps)]), torch.stack([sinks[i] for i in sorted(sinks)])


def _adapter_state(loaded, ids: torch.Tensor) -> str:
    """Checks the W_O adapter found the module that consumes the attention output: the input of
    that module must equal ``probs @ V`` rebuilt from what the observer is handed."""
    from sinkfix.capture import attention as capture
    from sinkfix.capture.adapters import output_projection_modules

    modules = output_projection_modules(loaded.base, loaded.model_type, loaded.layer_numbers)
    if modules is None:
        return "none (contribution null)"
    modules = dict(zip(loaded.layer_numbers, modules))
    seen: dict[int, torch.Tensor] = {}
    expected: dict[int, torch.Tensor] = {}

    class Rebuild:
        def observe(self, layer, probs, value, scores, start=0, sink_mass=None):
            values = capture._repeat_kv(value, probs.shape[1] // value.shape[1])
            out = torch.matmul(probs, values).transpose(1, 2)
            expected[layer] = out.reshape(*out.shape[:2], -1)

    hooks = [m.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, a[0])) for i, m in modules.items()]
    try:
        with torch.inference_mode(), capture.observing(Rebuild()):
            loaded.base(input_ids=ids)
    finally:
        for hook in hooks:
            hook.remove()
    if sorted(seen) != sorted(expected) or any(
        seen[i].shape != expected[i].shape or not torch.allclose(seen[i], expected[i], atol=1e-5) for i in expected
    ):
        return "WRONG"
    return "checked"


def _hidden(outputs) -> torch.Tensor:
    return outputs[0] if isinstance(outputs, tuple) else next(iter(outputs.values()))


def _line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def table(outcomes: list[Outcome]) -> str:
    """The Markdown table written into docs/architectures.md."""
    rows = ["| architecture | class | state | attention layers | W_O adapter | output gate | learned-sink mass | reason |",
            "|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        sink = "" if o.learned_sink_mass is None else f"{o.learned_sink_mass:.3f}"
        reason = o.reason.split("; SinkFix supports")[0].replace("|", "\\|")  # the list is in the summary
        rows.append(f"| {o.architecture.model_type} | {o.architecture.class_name} | {o.state} | {o.attention_layers} "
                    f"| {o.adapter} | {o.gate} | {sink} | {reason} |")
    return "\n".join(rows)
