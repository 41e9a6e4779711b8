"""The body of ``POST /api/analyze``, and the list of its fields that an unknown field is answered with.

The list is read from the model, so a field added here is named in that answer without another edit.
"""
from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from sinkfix.models import DEFAULT_MODEL
from sinkfix.settings import DEFAULT_BETA, DEFAULT_EPSILON, DEFAULT_MAP_TOKEN_LIMIT, DEFAULT_TAU_ATT, \
    DEFAULT_TAU_NORM, AnalysisSettings


class AnalyzeRequest(BaseModel):
    """The seed's body, plus the analysis settings. Strict: "0.3" is not a number, 1.0 is not a layer."""

    model_config = ConfigDict(strict=True, extra="forbid", protected_namespaces=())

    model_name: str = Field(DEFAULT_MODEL, validation_alias=AliasChoices("model_name", "model"))
    text: str
    layer: int | None = None
    tau_att: float = DEFAULT_TAU_ATT
    tau_norm: float = DEFAULT_TAU_NORM
    beta: float = DEFAULT_BETA
    epsilon: float = DEFAULT_EPSILON
    map_token_limit: int = DEFAULT_MAP_TOKEN_LIMIT
    max_tokens: int | None = None
    query_block: int | None = None
    bos: str = "auto"
    kernel: str = "auto"  # auto (triton on CUDA where it applies), blocked or triton; the run records which ran
    device: str = "auto"  # auto: CUDA when the server has it, else the CPU
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on the CPU
    include_maps: bool = False

    def settings(self) -> AnalysisSettings:
        return AnalysisSettings.from_dict(self.model_dump())  # from_dict keeps only the settings fields


def accepted_fields(model: type[BaseModel] = AnalyzeRequest) -> list[str]:
    """Every name the body accepts, in declaration order, aliases beside their field: model_name, model, ..."""
    names: list[str] = []
    for name, field in model.model_fields.items():
        names.append(name)
        aliases = field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices) else []
        names += [a for a in aliases if isinstance(a, str) and a not in names]
    return names
