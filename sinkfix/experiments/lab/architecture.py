"""SinkFix's lab transformer: a small decoder whose attention variant is a config switch.

A pre-LayerNorm decoder with learned absolute positions and a GELU MLP (GPT-2's layout), 1-4 layers.
The attention module asks transformers' attention interface for its function, like LLaMA's, and
passes the variant's keywords: ``normaliser=`` (sigmoid, relu, softpick) and ``s_aux=`` (one sink
logit per head: learned for ``sinklogit``, a constant 0 for ``softmax1``). Loaded with
``attn_implementation="sinkfix"`` every layer therefore reaches SinkFix's function, which
computes each variant's own normaliser; ``"eager"`` gives ``lab_eager_attention`` below, the
model's own plain forward that SinkFix's post-load probe and the tests compare against.

The ``gated`` variant multiplies each head's attention output by σ(x·w_h) (a head-wise gate from
the layer's input, Qiu et al. 2025) before the output projection, which it therefore calls
``gated_o_proj``: W_O alone does not give a head's norm-based contribution there, so SinkFix's
adapter, which looks for ``o_proj``, reports the contribution as unavailable for it.

``register()`` makes the architecture known to transformers' Auto classes in this process (no
``trust_remote_code``); ``sinkfix.load_model`` calls it before reading a config.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

MODEL_TYPE = "sinkfix_lab"


@strict
class LabConfig(PreTrainedConfig):
    """The lab decoder's size and its attention variant (see ``variants``)."""

    model_type = MODEL_TYPE

    vocab_size: int = 70
    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 128
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    normaliser: str = "softmax"  # softmax, sigmoid, relu, softpick
    attention_gate: bool = False  # head-wise sigmoid gate after attention
    sink_logit: str | None = None  # "learned" (sinklogit), "zero" (softmax1) or None
    n_registers: int = 0  # learned tokens the tokenizer prepends (their embeddings are vocabulary rows)
    lab_variant: str = "softmax"
    lab_task: str = ""
    bos_token_id: int | None = 0
    pad_token_id: int | None = 1
    eos_token_id: int | None = None
    tie_word_embeddings: bool = False


def lab_eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                        normaliser: str = "softmax", s_aux: torch.Tensor | None = None,
                        **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's own attention, written plainly per variant (no query blocks, no observer)."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    if s_aux is not None:  # gpt-oss's eager attention: the sink logit is one more column, dropped after softmax
        column = s_aux.reshape(1, -1, 1, 1).expand(query.shape[0], -1, query.shape[-2], -1)
        combined = torch.cat([scores, column.to(scores.dtype)], dim=-1)
        combined = combined - combined.max(dim=-1, keepdim=True).values
        weights = nn.functional.softmax(combined, dim=-1, dtype=combined.dtype)[..., :-1]
    elif normaliser == "softmax":
        weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32)
    elif normaliser == "sigmoid":
        weights = torch.sigmoid(scores.float())
    elif normaliser == "relu":
        weights = torch.relu(scores.float())
    elif normaliser == "softpick":  # Zuhri et al.'s form with m = max(row max, 0); masked keys leave the denominator
        s = scores.float()
        top = s.max(dim=-1, keepdim=True).values.clamp_min(0.0)
        shifted = torch.exp(s - top) - torch.exp(-top)
        seen = s > torch.finfo(s.dtype).min / 2
        weights = torch.relu(shifted) / (torch.where(seen, shifted.abs(), 0.0).sum(dim=-1, keepdim=True) + 1e-8)
    else:
        raise ValueError(f"unknown normaliser {normaliser!r}")
    weights = nn.functional.dropout(weights.to(query.dtype), p=dropout, training=module.training)
    output = torch.matmul(weights.to(value.dtype), value)
    return output.transpose(1, 2).contiguous(), weights


class LabAttention(nn.Module):
    """Multi-head causal self-attention with the variant's normaliser, sink logit and output gate."""

    def __init__(self, config: LabConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.n_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim ** -0.5
        self.is_causal = True
        width = self.n_heads * self.head_dim
        self.q_proj = nn.Linear(config.hidden_size, width)
        self.k_proj = nn.Linear(config.hidden_size, width)
        self.v_proj = nn.Linear(config.hidden_size, width)
        if config.attention_gate:
            self.gate_proj = nn.Linear(config.hidden_size, self.n_heads)
            self.gated_o_proj = nn.Linear(width, config.hidden_size)
        else:
            self.o_proj = nn.Linear(width, config.hidden_size)
        if config.sink_logit == "learned":
            self.sinks = nn.Parameter(torch.zeros(self.n_heads))
        elif config.sink_logit == "zero":
            self.register_buffer("sinks", torch.zeros(self.n_heads), persistent=False)
        else:
            self.sinks = None

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, _ = hidden.shape
        shape = (batch, length, self.n_heads, self.head_dim)
        query = self.q_proj(hidden).view(shape).transpose(1, 2)
        key = self.k_proj(hidden).view(shape).transpose(1, 2)
        value = self.v_proj(hidden).view(shape).transpose(1, 2)
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, lab_eager_attention)
        extra: dict[str, object] = {}
        if self.config.normaliser != "softmax":
            extra["normaliser"] = self.config.normaliser
        if self.sinks is not None:
            extra["s_aux"] = self.sinks
        output, _ = attention(self, query, key, value, attention_mask, scaling=self.scaling, dropout=0.0, **extra)
        if self.config.attention_gate:  # [B, T, H, d] times one gate per (token, head)
            output = output * torch.sigmoid(self.gate_proj(hidden))[..., None]
            return self.gated_o_proj(output.reshape(batch, length, -1))
        return self.o_proj(output.reshape(batch, length, -1))


class LabMLP(nn.Module):
    def __init__(self, config: LabConfig) -> None:
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.down_proj(nn.functional.gelu(self.up_proj(hidden)))


class LabDecoderLayer(nn.Module):
    def __init__(self, config: LabConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = LabAttention(config, layer_idx)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = LabMLP(config)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        hidden = hidden + self.self_attn(self.input_layernorm(hidden), attention_mask)
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


class LabPreTrainedModel(PreTrainedModel):
    config_class = LabConfig
    config: LabConfig
    base_model_prefix = "model"
    _no_split_modules = ["LabDecoderLayer"]
    _supports_attention_backend = True
    _supports_sdpa = False  # sdpa would ignore the variant's normaliser

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, LabAttention) and isinstance(module.sinks, nn.Parameter):
            with torch.no_grad():
                module.sinks.zero_()


class LabModel(LabPreTrainedModel):
    def __init__(self, config: LabConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layers = nn.ModuleList([LabDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                **kwargs: object) -> BaseModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        length = inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = torch.arange(length, device=inputs_embeds.device)[None]
        mask = create_causal_mask(config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  cache=None, position_ids=position_ids)
        hidden = inputs_embeds + self.embed_positions(position_ids)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return BaseModelOutput(last_hidden_state=self.norm(hidden))


class LabForCausalLM(LabPreTrainedModel):
    def __init__(self, config: LabConfig) -> None:
        super().__init__(config)
        self.model = LabModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                **kwargs: object) -> CausalLMOutput:
        hidden = self.model(input_ids, attention_mask, position_ids, inputs_embeds).last_hidden_state
        return CausalLMOutput(logits=self.lm_head(hidden))


_registered = threading.Lock()
_done = False


def register() -> None:
    """Make ``sinkfix_lab`` known to AutoConfig and AutoModel(ForCausalLM), once per process."""
    global _done
    with _registered:
        if _done:
            return
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

        AutoConfig.register(MODEL_TYPE, LabConfig)
        AutoModel.register(LabConfig, LabModel)
        AutoModelForCausalLM.register(LabConfig, LabForCausalLM)
        _done = True
