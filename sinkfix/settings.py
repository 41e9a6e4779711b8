"""Analysis settings: one frozen dataclass, validated once, stored with every run."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from sinkfix import layers
from sinkfix.errors import SettingsError

# Defaults, documented (with the reasons) in docs/concepts.md.
# tau_att: att_received sums to 1 over tokens, so 0.1 means "one token receives a tenth of all
# attention"; in a 10-30 token sentence that is 1.5-3x the uniform share, and BERT's [SEP] clears it.
DEFAULT_TAU_ATT = 0.1
# tau_norm: value_norm is divided by its max over tokens; sinks in BERT-family models sit well below half.
DEFAULT_TAU_NORM = 0.5
# beta: ACT (Yu et al. 2024) keeps 40% of a sink's attention and spreads the rest.
DEFAULT_BETA = 0.4
# epsilon: the sink-rate threshold of Gu et al. 2024.
DEFAULT_EPSILON = 0.3
# Full L x H x T x T maps are kept only up to this many tokens; above it only reductions survive.
DEFAULT_MAP_TOKEN_LIMIT = 256
BOS_MODES = ("auto", "always", "never")
# Settings that change no result (beyond float32 rounding): left out of cache keys.
NOT_IN_KEY = ("query_block", "kernel")
# Which attention computation runs (sinkfix.capture.fast_path): auto = the fused Triton kernels on
# CUDA where they cover the case, the query-blocked path otherwise.
KERNELS = ("auto", "blocked", "triton")


@dataclass(frozen=True)
class AnalysisSettings:
    """What an analysis depends on besides the model and the text.

    ``layer`` is the 0-based layer whose value norms feed the classification; None means L // 2.
    ``max_tokens`` caps the input length; None means the model's own limit.
    """

    layer: int | None = None
    tau_att: float = DEFAULT_TAU_ATT
    tau_norm: float = DEFAULT_TAU_NORM
    beta: float = DEFAULT_BETA
    epsilon: float = DEFAULT_EPSILON
    map_token_limit: int = DEFAULT_MAP_TOKEN_LIMIT
    max_tokens: int | None = None
    # Query rows per attention block (memory grows with block x T); None = from the memory budget.
    # It changes no number beyond float32 rounding, so it is not part of a run's cache key.
    query_block: int | None = None
    # "auto" follows the tokenizer; "always" prepends the model's BOS token when the tokenizer has
    # one and did not add it; "never" removes a BOS the tokenizer added.
    bos: str = "auto"
    # "auto", "blocked" or "triton". Like query_block it changes no number beyond rounding, so it is
    # not part of a run's cache key; the run records which kernel actually ran (Analysis.kernel).
    kernel: str = "auto"

    def __post_init__(self) -> None:
        for name in ("tau_att", "tau_norm", "beta", "epsilon"):
            _check_unit(name, getattr(self, name))
        if self.layer is not None and (not _is_int(self.layer) or self.layer < 0):
            raise SettingsError(f"layer must be a whole number >= 0, got {self.layer!r}")
        if not _is_int(self.map_token_limit) or self.map_token_limit < 0:
            raise SettingsError(f"map_token_limit must be a whole number >= 0, got {self.map_token_limit!r}")
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 2):
            raise SettingsError(f"max_tokens must be a whole number >= 2, got {self.max_tokens!r}")
        if self.query_block is not None and (not _is_int(self.query_block) or self.query_block < 1):
            raise SettingsError(f"query_block must be a whole number >= 1, got {self.query_block!r}")
        if self.bos not in BOS_MODES:
            raise SettingsError(f"bos must be one of {', '.join(BOS_MODES)}, got {self.bos!r}")
        if not isinstance(self.kernel, str) or self.kernel not in KERNELS:
            raise SettingsError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")

    def resolved(self, n_layers: int, attention_layers: Sequence[int] | None = None) -> AnalysisSettings:
        """The same settings with the layer filled in and checked against the model's depth.

        ``attention_layers``: a hybrid model's attention layers (None: every layer attends). The
        default is the middle attention layer, and an explicit layer must be one of them.
        """
        layer = layers.default_layer(n_layers, attention_layers) if self.layer is None else self.layer
        layers.row_of(layer, n_layers, attention_layers)  # raises SettingsError when it is not an attention layer
        return dataclasses.replace(self, layer=layer)

    def to_dict(self) -> dict:
        """Every field, as stored with each run."""
        return dataclasses.asdict(self)

    def key_dict(self) -> dict:
        """What a cache key hashes: every setting that changes a result. Defaults of settings added
        after the first release are left out, so keys of older runs stay valid."""
        data = {k: v for k, v in self.to_dict().items() if k not in NOT_IN_KEY}
        if data.get("bos") == "auto":
            del data["bos"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> AnalysisSettings:
        """Settings from a stored or requested dict; unknown keys are ignored, values are validated."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_unit(name: str, value: object) -> None:
    # No float(): an int past 1e308 cannot become a float (OverflowError); NaN fails the comparison.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise SettingsError(f"{name} must be a number between 0 and 1, got {value!r}")
