"""What an intervention edits: the ``Intervention`` settings, their targets, and which heads they reach.

An ``Intervention`` says what to do (target, beta, layers, heads); ``experiments.intervene`` resolves
it into a ``Plan`` for one batch and runs it inside the attention function.

Targets:
- ``detrimental``: the tokens the seed rule labels detrimental, computed per sequence;
- ``first``: token 0, the only way token 0 becomes a target;
- ``random``: a control: non-sink tokens whose attention mass (in the intervened heads) matches
  the mass of the ``match`` target as closely as possible, drawn with a fixed seed;
- ``tokens:I,J``: explicit indices (``tokens:first,3`` includes token 0 by name).
Padding is never a target.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from sinkfix.errors import SettingsError
from sinkfix.settings import DEFAULT_BETA, DEFAULT_TAU_ATT, DEFAULT_TAU_NORM

TARGET_KINDS = ("detrimental", "first", "random", "tokens")
Head = tuple[int, int]


@dataclass(frozen=True)
class Target:
    kind: str
    indices: tuple[int, ...] = ()
    include_first: bool = False  # only for kind "tokens": "tokens:first,..."

    def __str__(self) -> str:
        if self.kind != "tokens":
            return self.kind
        named = ["first"] if self.include_first else []
        return "tokens:" + ",".join(named + [str(i) for i in self.indices])


def parse_target(text: str) -> Target:
    """``detrimental``, ``first``, ``random`` or ``tokens:I,J``. Index 0 must be named ``first``."""
    if not isinstance(text, str):
        raise SettingsError(f"target must be text, got {text!r}")
    value = text.strip()
    if value in ("detrimental", "first", "random"):
        return Target(value)
    if not value.startswith("tokens:"):
        raise SettingsError(f"unknown target '{text}': use detrimental, first, random or tokens:I,J")
    indices: list[int] = []
    include_first = False
    for part in value[len("tokens:"):].split(","):
        part = part.strip()
        if part == "first":
            include_first = True
            continue
        if not part.isdigit():
            raise SettingsError(f"token index '{part}' in '{text}' is not a whole number >= 0")
        index = int(part)
        if index == 0:
            raise SettingsError("token 0 is protected; name it to include it: --target first or tokens:first,...")
        indices.append(index)
    if not indices and not include_first:
        raise SettingsError(f"'{text}' names no tokens: write tokens:3,7")
    return Target("tokens", tuple(sorted(set(indices))), include_first)


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """``A-B`` (inclusive), ``A``, or a comma list of both; None means every layer."""
    if text is None or not str(text).strip():
        return None
    layers: set[int] = set()
    for part in str(text).split(","):
        bounds = part.strip().split("-")
        if len(bounds) > 2 or not all(b.strip().isdigit() for b in bounds):
            raise SettingsError(f"layers '{text}' must look like 2-4 or 0,3,5")
        low, high = int(bounds[0]), int(bounds[-1])
        if high < low:
            raise SettingsError(f"layer range '{part.strip()}' runs backwards")
        layers.update(range(low, high + 1))
    return tuple(sorted(layers))


def parse_heads(text: str | None) -> tuple[Head, ...] | None:
    """``L:H,L:H,...``; None means every head of the chosen layers."""
    if text is None or not str(text).strip():
        return None
    heads: set[Head] = set()
    for part in str(text).split(","):
        pieces = part.strip().split(":")
        if len(pieces) != 2 or not all(p.strip().isdigit() for p in pieces):
            raise SettingsError(f"head '{part.strip()}' must look like LAYER:HEAD, for example 3:7")
        heads.add((int(pieces[0]), int(pieces[1])))
    return tuple(sorted(heads))


def format_heads(heads: tuple[Head, ...] | None) -> str | None:
    return None if heads is None else ",".join(f"{layer}:{head}" for layer, head in heads)


@dataclass(frozen=True)
class Intervention:
    """What to redistribute, where, and how much to keep (``beta``: 1 keeps everything).

    ``tau_att``/``tau_norm``/``norm_layer`` feed the seed rule for ``detrimental`` (and for
    deciding which tokens count as sinks when drawing the ``random`` control). ``match`` is the
    target whose mass ``random`` imitates.
    """

    target: str = "detrimental"
    beta: float = DEFAULT_BETA
    layers: tuple[int, ...] | None = None
    heads: tuple[Head, ...] | None = None
    tau_att: float = DEFAULT_TAU_ATT
    tau_norm: float = DEFAULT_TAU_NORM
    norm_layer: int | None = None
    match: str = "detrimental"
    seed: int = 0

    def __post_init__(self) -> None:
        parse_target(self.target)
        if parse_target(self.match).kind == "random":
            raise SettingsError("the random control must match a real target, not another random set")
        for name in ("beta", "tau_att", "tau_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise SettingsError(f"{name} must be a number between 0 and 1, got {value!r}")

    @property
    def parsed_target(self) -> Target:
        return parse_target(self.target)

    def with_(self, **changes: object) -> Intervention:
        """A copy with some fields changed (an arm of a sweep or a control)."""
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        """A short human-readable name: target, beta and where it acts."""
        where = format_heads(self.heads) or (
            "all heads" if self.layers is None else f"layers {self.layers[0]}-{self.layers[-1]}"
        )
        extra = f" (matched to {self.match})" if self.target == "random" else ""
        return f"{self.target}{extra}, beta={self.beta:g}, {where}"

    def to_dict(self) -> dict:
        """Plain JSON-ready fields, as stored with an evaluation."""
        out = dataclasses.asdict(self)
        out["heads"] = None if self.heads is None else [list(h) for h in self.heads]
        out["layers"] = None if self.layers is None else list(self.layers)
        return out


def needs_stats(intervention: Intervention | None) -> bool:
    """Whether resolving the target needs a clean forward's statistics (first and tokens:... do not)."""
    return intervention is not None and intervention.parsed_target.kind in ("detrimental", "random")


def attention_layer_list(layers: int | Sequence[int]) -> list[int]:
    """A model's depth (every layer attends) or a hybrid's attention layers, as layer numbers."""
    return list(range(layers)) if isinstance(layers, int) else [int(layer) for layer in layers]


def where_attention(attending: list[int]) -> str:
    """Which layers attend, for an error message."""
    if attending == list(range(len(attending))):
        return f"layers 0..{len(attending) - 1}"
    return f"attention in layers {', '.join(str(layer) for layer in attending)} only"


def head_map(intervention: Intervention, n_layers: int | Sequence[int], n_heads: int) -> dict[int, tuple[int, ...] | None]:
    """Layer -> heads to edit (None: all heads of that layer), checked against the model's shape.

    ``n_layers``: the model's depth, or a hybrid's attention layers (``LoadedModel.layer_numbers``):
    attention can only be edited where there is attention, and "every layer" means every attention layer.
    """
    attending = attention_layer_list(n_layers)
    layers = intervention.layers
    for layer in layers or ():
        if layer not in attending:
            raise SettingsError(f"layer {layer} is out of range: this model has {where_attention(attending)}")
    if intervention.heads is None:
        return {layer: None for layer in (layers if layers is not None else attending)}
    out: dict[int, list[int]] = {}
    for layer, head in intervention.heads:
        if layer not in attending or head >= n_heads:
            raise SettingsError(
                f"head {layer}:{head} is out of range: this model has {where_attention(attending)}, heads 0..{n_heads - 1}"
            )
        if layers is None or layer in layers:
            out.setdefault(layer, []).append(head)
    return {layer: tuple(sorted(heads)) for layer, heads in out.items()}
