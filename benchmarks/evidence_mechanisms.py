"""The README's mechanism evidence: Gu et al.'s sink rates, Sun et al.'s massive activations, and BOS.

    .venv/bin/python benchmarks/evidence_mechanisms.py [--data ../shared/data] [--quick]

Writes cache/evidence_mechanisms.json and cache/evidence_mechanisms.md. A few minutes on 2 cores:
- Sink₁^ε (ε = 0.3, T = 64, n = 100) on natural / random / repeated inputs, on SmolLM2 (as its
  tokenizer does, and with a BOS prepended) and MiniLM (token 0 is [CLS]), beside the paper;
- SmolLM2's massive activations (layer, token, dim, ratio to the median) on tinyshakespeare, with the
  zero and mean interventions (ΔNLL, paired bootstrap over chunks; means from a disjoint part);
- where SmolLM2's sink goes when a BOS is prepended.
``collect`` and ``markdown`` are what benchmarks/evidence.py calls.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sinkfix  # noqa: E402
from sinkfix import paths  # noqa: E402
from sinkfix.experiments.massive import massive_activations  # noqa: E402
from sinkfix.experiments.sinkrate import KINDS, PAPER, sink_rate_protocol  # noqa: E402

EVAL_CHARS = (100_000, 112_000)  # about 8 chunks of 256 SmolLM2 tokens, from the middle of the file
REFERENCE_CHARS = (0, 12_000)  # disjoint: the mean values come from here
BOS_SENTENCE = "The cat sat on the mat and looked out of the window at the rain."


def say(message: str) -> None:
    print(f"[evidence_mechanisms] {message}", file=sys.stderr, flush=True)


def _rates(result) -> dict:
    return {k: {"rate": r.rate, "ci95": list(r.ci95), "first_positions": r.per_position[:3]}
            for k, r in result.kinds.items()}


def collect(data: Path, quick: bool = False) -> dict:
    text = (data / "tinyshakespeare.txt").read_text(encoding="utf-8")
    n = 20 if quick else 100
    out: dict = {"paper": PAPER, "n": n, "length": 64, "epsilon": 0.3, "sinkrate": {}}
    smollm2, minilm = sinkfix.get_model("smollm2-135m"), sinkfix.get_model("minilm")
    for label, model, bos in (("SmolLM2-135M", smollm2, "auto"), ("SmolLM2-135M, BOS prepended", smollm2, "always"),
                              ("MiniLM-L6 ([CLS] first)", minilm, "auto")):
        say(f"sink rate: {label}")
        out["sinkrate"][label] = _rates(sink_rate_protocol(model, KINDS, n, 64, text=text, bos=bos))
    say("massive activations: SmolLM2")
    evaluated, reference = text[slice(*EVAL_CHARS)], text[slice(*REFERENCE_CHARS)]
    chunks = 2 if quick else 8
    result = massive_activations(smollm2, evaluated, [reference], max_tokens=256, max_chunks=chunks)
    out["massive"] = {"top": result.top, "first_massive_layer": result.first_massive_layer,
                      "dims": result.massive_dims, "layers": result.layers, "intervention": result.intervention,
                      "spearman_sink_rate": result.link["spearman_sink_rate"],
                      "spearman_value_norm": result.link["spearman_value_norm"], "top_features": result.top_features,
                      "top_peak_token": result.link["top_peak_token"], "top_sink_token": result.link["top_sink_token"]}
    say("massive activations: SmolLM2 with a BOS")
    bos_result = massive_activations(smollm2, evaluated, intervene=False, max_tokens=256, bos="always")
    out["massive_bos"] = {"top": bos_result.top, "dims": bos_result.massive_dims,
                          "first_massive_layer": bos_result.first_massive_layer}
    say("massive activations: MiniLM")
    out["massive_minilm"] = {"top": massive_activations(minilm, evaluated, intervene=False, max_tokens=256).top}
    say("BOS: one sentence, auto vs always")
    out["bos_sentence"] = {}
    for bos in ("auto", "always"):
        analysis = sinkfix.analyze(BOS_SENTENCE, smollm2, sinkfix.AnalysisSettings(bos=bos))
        out["bos_sentence"][bos] = {"tokens": analysis.tokens[:3], "sink_rate": analysis.sink_rate[:3].tolist(),
                                    "att_received": analysis.att_received[:3].tolist()}
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown(evidence: dict) -> str:
    lines = [f"Sink₁^ε of token index 0, ε = {evidence['epsilon']}, T = {evidence['length']}, "
             f"n = {evidence['n']} sequences per kind, 95% bootstrap CI over sequences.", "",
             "| model | natural % | random % | repeated % |", "|---|---|---|---|"]
    for name, rates in evidence["paper"].items():
        lines.append(f"| {name} (Gu et al., paper) | " + " | ".join(f"{rates[k]:.2f}" for k in KINDS) + " |")
    for name, rates in evidence["sinkrate"].items():
        cells = [f"{_pct(rates[k]['rate'])} [{_pct(rates[k]['ci95'][0])}, {_pct(rates[k]['ci95'][1])}]" for k in KINDS]
        lines.append(f"| {name} (SinkFix) | " + " | ".join(cells) + " |")
    lines += ["", "Sink_j (mean over sequences) at indices 0, 1, 2:", ""]
    for name, rates in evidence["sinkrate"].items():
        lines.append(f"- {name}: " + "; ".join(
            f"{k} " + " / ".join(_pct(x) for x in rates[k]["first_positions"]) for k in KINDS))
    m = evidence["massive"]
    top = m["top"]
    lines += ["", "Massive activations, SmolLM2-135M, 256 tokens of tinyshakespeare:", "",
              "| | layer | token | dim | value | median abs | ratio |", "|---|---|---|---|---|---|---|"]
    rows = [("SmolLM2 (no BOS)", top), ("SmolLM2, BOS prepended", evidence["massive_bos"]["top"]),
            ("MiniLM", evidence["massive_minilm"]["top"])]
    for label, t in rows:
        lines.append(f"| {label} | {t['layer']} | {t['token']} `{t['token_text']}` | {t['dim']} | {t['value']:.1f} | "
                     f"{t['median_abs']:.3f} | {t['ratio']:.0f}x |")
    lines += ["", f"Massive entries (|h| > 100 and > 1000x median) from layer {m['first_massive_layer']}, dims {m['dims']}; "
              f"Spearman of a token's peak |h| with its sink rate {m['spearman_sink_rate']:.2f}, "
              f"with its value norm {m['spearman_value_norm']:.2f}; the token with the largest peak is #{m['top_peak_token']}, "
              f"the token with the highest sink rate is #{m['top_sink_token']}."]
    if m["intervention"]:
        iv = m["intervention"]
        lines += ["", f"Intervention at layer {iv['layer']}, {iv['n_chunks']} chunks of {iv['max_tokens']} tokens, "
                  f"means from {iv['reference']}:", "",
                  "| set massive entries to | NLL before | NLL after | ΔNLL [95% CI] | perplexity before → after |",
                  "|---|---|---|---|---|"]
        for name, arm in iv["arms"].items():
            lines.append(f"| {name} | {arm['baseline_nll']:.3f} | {arm['intervened_nll']:.3f} | "
                         f"{arm['delta_nll']:+.4f} [{arm['ci95'][0]:+.4f}, {arm['ci95'][1]:+.4f}] | "
                         f"{arm['baseline_ppl']:.1f} → {arm['intervened_ppl']:.4g} |")
    lines += ["", "One sentence on SmolLM2, sink rate / att_received at indices 0, 1, 2:", ""]
    for bos, row in evidence["bos_sentence"].items():
        cells = ", ".join(f"`{t}` {s:.2f} / {a:.3f}" for t, s, a in zip(row["tokens"], row["sink_rate"], row["att_received"]))
        lines.append(f"- bos={bos}: {cells}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="n = 20 sequences, 2 chunks")
    args = parser.parse_args()
    evidence = collect(args.data, args.quick)
    cache = paths.cache_dir()
    (cache / "evidence_mechanisms.json").write_text(json.dumps(evidence, indent=1))
    (cache / "evidence_mechanisms.md").write_text(markdown(evidence))
    print(markdown(evidence))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
