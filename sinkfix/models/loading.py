"""Loading: embedded models, hub ids and local directories, offline first.

Every model is loaded with SinkFix's attention function (``attn_implementation="sinkfix"``) and
``trust_remote_code=False``, then probed once to check that every layer's attention reaches us.
"""
from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from sinkfix.analysis import metrics
from sinkfix import layers
from sinkfix.capture import adapters
from sinkfix.capture.gates import Gates, find_gates
from sinkfix.capture import attention as capture
from sinkfix.errors import ModelNotFoundError, SettingsError, UnsupportedModelError
from sinkfix.models import classes, devices
from sinkfix.models.catalog import EMBEDDED, Progress, embedded_dir, embedded_names
from sinkfix.models.probe import (assign_layer_indices, bypass_message, check_interface, first_line,
                                  is_causal, probe)

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
    # Keyed by model layer number (a hybrid's attention layers only), so ``[layer]`` reads them as a list would.
    output_projections: dict[int, torch.Tensor] | None
    output_grams: dict[int, torch.Tensor] | None  # per layer [H, d, d] float32, for the norm-based contribution
    load_seconds: float
    # Where the weights live ("cpu", "cuda:0", or the devices of a device_map split: "cuda:0,cuda:1")
    # and their dtype; both go into a run's cache key and are stored with the run.
    device_name: str = "cpu"
    dtype_name: str = "float32"
    # A hybrid model's attention layers (the model's own layer numbers, ascending); None when every
    # layer attends. Per-layer results hold one row per attention layer (see sinkfix.layers).
    attention_layers: list[int] | None = None
    # Models with an attention output gate (Qwen3-Next): where to read it (see capture.gates).
    gates: Gates | None = None

    @property
    def layer_numbers(self) -> list[int]:
        """The model layer number of each per-layer row: the attention layers."""
        return layers.layer_numbers(self.n_layers, self.attention_layers)

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
        return _Source(str(embedded_dir(name, progress)), local_only=True)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"'{name}' is a path but holds no config.json, so it is not a model directory")
        return _Source(str(path), local_only=True)
    if name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") > 1:
        raise ModelNotFoundError(f"local model directory not found: {name}")
    return _Source(name, local_only=_in_local_hub_cache(name) or not _hub_reachable())


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


# ---------------------------------------------------------------- loading


def load_model(name: str, progress: Progress | None = None, device: str = "auto", dtype: str = "auto",
               device_map: str | dict | None = None, max_memory: dict | None = None) -> LoadedModel:
    """Load ``name``: an embedded model (minilm, smollm2-135m), a hub id, or a local directory.

    ``device``: auto (CUDA when available, else the CPU), cpu, cuda, cuda:N or mps. ``dtype``:
    auto (bfloat16 on CUDA, float32 elsewhere), float32, bfloat16 or float16. ``device_map="auto"``
    (with optional ``max_memory``, as accelerate takes it) spreads the layers over the devices
    instead; ``device`` then only picks the dtype default.
    """
    say = progress or (lambda message: None)
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFoundError(f"no model name given; embedded models: {embedded_names()}")
    name = name.strip()
    device_name = devices.resolve_device(device)
    dtype_name = devices.resolve_dtype(dtype, device_name)
    devices.check_device_map(device_map)
    if max_memory is not None and device_map is None:
        raise SettingsError("max_memory only applies with device_map='auto'")
    started = time.perf_counter()
    capture.register()
    say(f"resolving {name}")
    with _quiet_transformers():
        source = _resolve(name, say)
        say(f"loading weights from {source.location} ({dtype_name})")
        placement = None if device_map is None else {"device_map": device_map, "max_memory": max_memory}
        model, tokenizer, lm_kind = _load_weights(name, source, devices.torch_dtype(dtype_name), placement)
    say("checking attention capture")
    n_layers = int(model.config.num_hidden_layers)
    assign_layer_indices(model)
    # The probe runs before the move: its inputs are CPU tensors, and where the weights live
    # changes nothing about how attention is routed.
    probed = probe(model, tokenizer, n_layers, name)
    attending = probed.attention_layers
    if device_map is None:
        if device_name != "cpu":
            say(f"moving weights to {device_name}")
            model.to(device_name)
    else:
        device_name = devices.split_name(getattr(model, "hf_device_map", None) or {device_name: device_name})
    say("fingerprinting weights")
    config = model.config
    n_heads = probed.n_heads  # as the attention layers have them (Whisper's decoder: not config's)
    offloaded = _offloaded(model)
    with _offloaded_weights_loaded(model):
        fingerprint_ = fingerprint(model)
        numbers = layers.layer_numbers(n_layers, attending)
        projections = adapters.output_projections(model.base_model, config.model_type, numbers)
        if projections is not None and offloaded:  # copies: offloaded weights go back to meta after this block
            projections = {layer: w.detach().clone() for layer, w in projections.items()}
        grams = None if projections is None else {layer: metrics.output_grams(w.float(), n_heads)
                                                  for layer, w in projections.items()}
    return LoadedModel(
        name=name,
        source=source.location,
        model=model,
        tokenizer=tokenizer,
        model_type=config.model_type,
        is_causal=is_causal(model),
        lm_kind=lm_kind,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=probed.n_kv_heads,
        max_tokens=_max_tokens(config, tokenizer),
        fingerprint=fingerprint_,
        output_projections=projections,
        output_grams=grams,
        load_seconds=time.perf_counter() - started,
        device_name=device_name,
        dtype_name=dtype_name,
        attention_layers=attending,
        gates=find_gates(model.base_model, config.model_type, numbers),
    )


def _offloaded(model: nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


@contextmanager
def _offloaded_weights_loaded(model: nn.Module) -> Iterator[None]:
    """With a device_map that offloads to disk (or CPU under accelerate's hooks), offloaded weights
    sit on the meta device between forwards; load them to the CPU for the fingerprint and the W_O
    adapters. Costs the model's size in RAM for a moment, once per load."""
    if not _offloaded(model):
        yield
        return
    from accelerate.utils import align_module_device, has_offloaded_params

    with ExitStack() as stack:
        for module in model.modules():
            if has_offloaded_params(module):
                stack.enter_context(align_module_device(module, torch.device("cpu")))
        yield


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


def _load_weights(name: str, source: _Source, dtype: torch.dtype = torch.float32,
                  placement: dict | None = None) -> tuple[nn.Module, object, str | None]:
    from transformers import AutoConfig, AutoTokenizer

    from sinkfix.experiments.lab import architecture  # SinkFix's own lab models: known to the Auto classes

    architecture.register()
    kwargs = {"local_files_only": source.local_only, "trust_remote_code": False}
    try:
        config = AutoConfig.from_pretrained(source.location, **kwargs)
    except (OSError, ValueError) as error:
        raise _not_found(name, source, error) from None
    model_class, lm_kind = classes.model_class(config)
    check_interface(model_class, config, name)  # Falcon, MPT, ...: refuse before an obscure load error
    try:
        model = model_class.from_pretrained(
            source.location, config=config, attn_implementation=capture.ATTN_NAME, dtype=dtype,
            **(placement or {}), **kwargs,
        )
        tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
    except KeyError as error:
        if error.args == (capture.ATTN_NAME,):  # the class looked our function up by name and has no interface
            raise UnsupportedModelError(bypass_message(name, config.model_type)) from None
        raise _not_found(name, source, error) from None
    except OSError as error:
        raise _not_found(name, source, error) from None
    except ValueError as error:
        raise UnsupportedModelError(
            f"{config.model_type} models cannot use SinkFix's attention function: {first_line(error)}"
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
    return ModelNotFoundError(f"could not load '{name}': {first_line(error)}")


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


