"""Which transformers class loads a checkpoint: the auto class for its head, else its own class."""
from __future__ import annotations


def model_class(config: object) -> tuple[type, str | None]:
    """Keep the LM head when the checkpoint has one: evaluation needs it, analysis ignores it."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    architectures = getattr(config, "architectures", None) or []
    for auto, kind, endings in ((AutoModelForCausalLM, "causal", ("ForCausalLM", "LMHeadModel")),
                                (AutoModelForMaskedLM, "masked", ("ForMaskedLM",))):
        named = [a for a in architectures if a.endswith(endings)]
        if named:
            return (auto if type(config) in auto._model_mapping else named_class(named[0], config) or auto), kind
    return AutoModel, None


def named_class(name: str, config: object) -> type | None:
    """The checkpoint's own transformers class when the auto class has no entry for its config class
    (Emu3's or MusicGen's causal-LM class takes a text or decoder config the auto mapping lacks).
    Only classes transformers itself defines: trust_remote_code stays off."""
    import transformers

    named = getattr(transformers, name, None)
    return named if isinstance(config, getattr(named, "config_class", type(None))) else None
