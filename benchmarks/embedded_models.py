"""The "What the embedded models show" table (docs/models.md): mean att_received, value norm and
sink rate of token 0, [SEP] and "." over the first 40 sentences of STS-B dev, default settings.

    .venv/bin/python benchmarks/embedded_models.py [--data ../shared/data] [--n 40]

It prints the Markdown table (1.5 min of CPU; SmolLM2 converts once on first use).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

import sinkfix
from sinkfix.experiments.sts import load_sts

DATA = Path(os.environ.get("SINKFIX_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def rows(name: str, label: str, sentences: list[str]) -> list[str]:
    """One table row per token kind: token 0, then [SEP] and "." where the tokenizer has them."""
    model = sinkfix.get_model(name)
    results = [sinkfix.analyze(text, model) for text in sentences]
    kinds: dict[str, list[tuple[float, float, float]]] = {"token 0": [], "[SEP]": [], ".": []}
    for result in results:
        for index, token in enumerate(result.tokens):
            kind = "token 0" if index == 0 else ("." if token.lstrip("Ġ▁") == "." else token)
            if kind in kinds:
                kinds[kind].append((float(result.att_received[index]), float(result.value_norm[index]),
                                    float(result.sink_rate[index])))
    mean_tokens = np.mean([r.n_tokens for r in results])
    out = [f"<!-- {label}: {len(results)} sentences, mean {mean_tokens:.1f} tokens -->"]
    for kind, values in kinds.items():
        if values:
            att, norm, rate = np.asarray(values).mean(axis=0)
            out.append(f"| {label} | {kind} | {att:.3f} | {norm:.3f} | {rate:.3f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with stsbenchmark/")
    parser.add_argument("--n", type=int, default=40, help="sentences (the first sentence of each dev pair)")
    args = parser.parse_args()
    sentences = load_sts(args.data / "stsbenchmark", "dev", limit=args.n).first
    print("| model | token | mean att_received | mean value_norm (layer L//2) | mean sink rate (ε = 0.3) |")
    print("|---|---|---|---|---|")
    for name, label in (("minilm", "MiniLM"), ("smollm2-135m", "SmolLM2")):
        print("\n".join(rows(name, label, sentences)))


if __name__ == "__main__":
    main()
