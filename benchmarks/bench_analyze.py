"""analyze() against a bare eager forward with output_attentions=True, same weights, same input."""
from __future__ import annotations

import torch

import sinkfix
from sinkfix.models import model_inputs

from .common import interleaved_medians, text_of_tokens

CASES = {"minilm": (32, 128, 512), "smollm2-135m": (128, 512, 2048)}
TARGETS = {("minilm", 128): 1.3, ("smollm2-135m", 512): 1.3}


def _bare_forward(loaded: sinkfix.LoadedModel, inputs: dict) -> None:
    """The same loaded model switched to transformers' eager attention for one call."""
    config = loaded.model.config
    config._attn_implementation = "eager"
    try:
        with torch.inference_mode():
            loaded.base(**inputs, output_attentions=True)
    finally:
        config._attn_implementation = "sinkfix"


def run(repeats: int = 5) -> list[dict]:
    rows = []
    for name, lengths in CASES.items():
        loaded = sinkfix.get_model(name)
        for n_tokens in lengths:
            text = text_of_tokens(loaded.tokenizer, n_tokens)
            settings = sinkfix.AnalysisSettings(max_tokens=n_tokens)
            result = sinkfix.analyze(text, loaded, settings)
            inputs = model_inputs(loaded.model, loaded.tokenizer(text, return_tensors="pt", truncation=True,
                                                                 max_length=n_tokens))
            medians = interleaved_medians(
                {"analyze": lambda: sinkfix.analyze(text, loaded, settings),
                 "bare": lambda: _bare_forward(loaded, inputs)},
                repeats=repeats if n_tokens < 2048 else max(3, repeats // 2),
            )
            ratio = medians["analyze"] / medians["bare"]
            target = TARGETS.get((name, n_tokens))
            rows.append({
                "benchmark": "analyze vs bare eager forward",
                "case": f"{name} T={result.n_tokens}",
                "analyze_ms": round(medians["analyze"] * 1000, 1),
                "bare_ms": round(medians["bare"] * 1000, 1),
                "value": round(ratio, 2),
                "unit": "x",
                "target": f"<= {target}" if target else "",
                "met": None if target is None else ratio <= target,
            })
            print(rows[-1], flush=True)
    return rows
