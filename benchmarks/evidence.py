"""The README's evidence: does redistributing away from sinks help, and do the controls agree?

    .venv/bin/python benchmarks/evidence.py [--data ../shared/data] [--only minilm|smollm2] [--quick]
    .venv/bin/python benchmarks/evidence.py --part longcontext|mechanisms [their own options]

The long-context tables (StreamingLLM windows, KV quantisation) live in evidence_longcontext.py
and the mechanism tables (sink-rate protocol, massive activations, BOS) in evidence_mechanisms.py;
``--part`` hands the remaining arguments to them.

Writes cache/evidence.json and cache/evidence.md (the two tables). Takes tens of minutes on
2 CPU cores: each arm is a full pass over STS-B test (2758 sentences) or the held-out text.

Arms, each at beta = 0.4 (ACT's default) and 0.0 (all sink attention moved):
- detrimental: the seed rule at its defaults (tau_att 0.1, tau_norm 0.5), all heads;
- detrimental (loose): the seed rule at tau_att 0.05, tau_norm 0.9, all heads, so that it finds
  the secondary high-attention tokens (labelled, not the default);
- calibrated: ACT-style head search with the loose target at beta 0.4 on the dev split; the kept
  heads, then random and first on the same heads;
- first: token 0, all heads;
- random: non-sink tokens with matched mass (matched to first, and to the loose set), all heads.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import sinkfix  # noqa: E402
from sinkfix.experiments import calibrate
from sinkfix.policy.ownership import LOCAL  # noqa: E402
from sinkfix import paths
from sinkfix.experiments.evaluate import evaluate_many, run_chunks  # noqa: E402
from sinkfix.experiments.intervene import Intervention  # noqa: E402
from sinkfix.experiments.sts import PairSet, load_sts  # noqa: E402
from sinkfix.progress import Progress  # noqa: E402

BETAS = (0.4, 0.0)
LOOSE = {"tau_att": 0.05, "tau_norm": 0.9}
DEV_PAIRS = 500
SHAKESPEARE_DEV_CHARS = (0, 4000)  # about 4 chunks of 256 tokens
SHAKESPEARE_HELDOUT_CHARS = 8000  # from the middle of the file: disjoint from dev
CHUNK_TOKENS = 256
SMOLLM2_MAX_HEADS = None  # all 270 heads (about 6 minutes on 2 cores); set e.g. 54 to search the top 20% by target mass


def arms(calibrated: tuple | None) -> list[tuple[str, Intervention]]:
    """(row label, intervention at beta 0.4); each is also run at beta 0."""
    out = [
        ("detrimental (seed rule, defaults), all heads", Intervention(target="detrimental")),
        ("detrimental (loose: tau_att 0.05, tau_norm 0.9), all heads", Intervention(target="detrimental", **LOOSE)),
        ("random, matched to loose set, all heads", Intervention(target="random", match="detrimental", **LOOSE)),
        ("first (token 0), all heads", Intervention(target="first")),
        ("random, matched to first, all heads", Intervention(target="random", match="first")),
    ]
    if calibrated:
        heads = tuple(calibrated)
        out += [
            (f"calibrated heads ({len(heads)}), loose detrimental", Intervention(target="detrimental", heads=heads, **LOOSE)),
            ("calibrated heads: random control", Intervention(target="random", match="detrimental", heads=heads, **LOOSE)),
            ("calibrated heads: first control", Intervention(target="first", heads=heads, **LOOSE)),
        ]
    return out


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def minilm(data: Path, quick: bool) -> dict:
    loaded = sinkfix.get_model("minilm")
    started = time.perf_counter()
    test = load_sts(data / "stsbenchmark", "test", limit=200 if quick else None)
    dev_all = load_sts(data / "stsbenchmark", "dev")
    picks = np.sort(np.random.default_rng(0).choice(len(dev_all), size=min(DEV_PAIRS, len(dev_all)), replace=False))
    dev = dev_all.subset(picks.tolist() if not quick else picks[:100].tolist())
    say(f"minilm: embedding STS-B test ({len(test)} pairs)")
    with Progress() as progress:
        pairs = PairSet(loaded, test, progress=progress)
    say(f"minilm: baseline Spearman {pairs.baseline_spearman:.4f}")
    out: dict = {"baseline_spearman": pairs.baseline_spearman, "n_pairs": len(test), "dev_pairs": len(dev)}
    calibrations = {}
    for name, template in (("default", Intervention(target="detrimental")),
                           ("loose", Intervention(target="detrimental", **LOOSE))):
        say(f"minilm: head search ({name} detrimental) on {len(dev)} dev pairs")
        with Progress() as progress:
            cal = calibrate.calibrate_sts(loaded, dev, pairs, template, progress=progress)
        calibrate.save(cal, f"minilm-sts-{name}", viewer=LOCAL)
        calibrations[name] = cal.to_json()
        say(f"minilm: {name}: kept {len(cal.kept_heads)} heads in {cal.seconds:.0f} s")
    out["calibrations"] = calibrations
    rows = []
    for label, intervention in arms(tuple(map(tuple, calibrations["loose"]["kept_heads"])) or None):
        for beta in BETAS:
            say(f"minilm: {label} at beta {beta}")
            with Progress() as progress:
                rows.append({"arm": label, **pairs.score(intervention.with_(beta=beta), progress).to_json()})
    out["rows"] = rows
    out["seconds"] = time.perf_counter() - started
    return out


def smollm2(data: Path, quick: bool) -> dict:
    loaded = sinkfix.get_model("smollm2-135m")
    started = time.perf_counter()
    text = (data / "tinyshakespeare.txt").read_text(encoding="utf-8")
    dev_text = text[SHAKESPEARE_DEV_CHARS[0] : SHAKESPEARE_DEV_CHARS[1] // (4 if quick else 1)]
    middle = len(text) // 2
    heldout_text = text[middle : middle + SHAKESPEARE_HELDOUT_CHARS // (4 if quick else 1)]
    heldout = run_chunks(loaded, [heldout_text], CHUNK_TOKENS)
    out: dict = {"dev_chars": list(SHAKESPEARE_DEV_CHARS), "heldout_chars": [middle, middle + len(heldout_text)],
                 "chunk_tokens": CHUNK_TOKENS, "heldout_chunks": len(heldout)}
    calibrations = {}
    for name, template in (("default", Intervention(target="detrimental")),
                           ("loose", Intervention(target="detrimental", **LOOSE))):
        say(f"smollm2: head search ({name} detrimental), {SMOLLM2_MAX_HEADS or 'all'} heads")
        tick = time.perf_counter()
        with Progress() as progress:
            cal = calibrate.calibrate_nll(loaded, [dev_text], heldout, template, CHUNK_TOKENS,
                                          max_heads=4 if quick else SMOLLM2_MAX_HEADS, progress=progress)
        calibrate.save(cal, f"smollm2-nll-{name}", viewer=LOCAL)
        calibrations[name] = cal.to_json()
        say(f"smollm2: {name}: kept {len(cal.kept_heads)} heads in {time.perf_counter() - tick:.0f} s")
    out["calibrations"] = calibrations
    labelled = [(label, i.with_(beta=beta)) for label, i in
                arms(tuple(map(tuple, calibrations["loose"]["kept_heads"])) or None) for beta in BETAS]
    say(f"smollm2: {len(labelled)} arms on {len(heldout)} held-out chunks")
    with Progress() as progress:
        results = evaluate_many(loaded, heldout, [i for _, i in labelled], progress=progress)
    out["baseline_nll"] = results[0].baseline_nll
    out["n_positions"] = results[0].n_positions
    out["rows"] = [{"arm": label, **r.to_json()} for (label, _), r in zip(labelled, results)]
    out["seconds"] = time.perf_counter() - started
    return out


def markdown(evidence: dict) -> str:
    lines = []
    if "minilm" in evidence:
        m = evidence["minilm"]
        lines += [f"**MiniLM on STS-B test** ({m['n_pairs']} pairs; Spearman x 100; baseline {100 * m['baseline_spearman']:.2f}; "
                  "Δ with paired bootstrap 95% CI; sentences = how many of the 2758 had any target token)", "",
                  "| arm | β | Spearman | Δ | 95% CI | sentences |", "|---|---|---|---|---|---|"]
        for r in m["rows"]:
            lo, hi = r["delta_ci95"]
            lines.append(f"| {r['arm']} | {r['beta']:g} | {100 * r['intervened_spearman']:.2f} | {100 * r['delta_spearman']:+.2f} "
                         f"| [{100 * lo:+.2f}, {100 * hi:+.2f}] | {r['sentences_with_targets']} |")
        lines += ["", _calibration_line(m["calibrations"], "dev pairs", 100), ""]
    if "smollm2" in evidence:
        s = evidence["smollm2"]
        lines += [f"**SmolLM2-135M on held-out Shakespeare** ({s['n_positions']} next-token positions in {s['heldout_chunks']} "
                  f"chunks of ≤{s['chunk_tokens']} tokens; baseline NLL {s['baseline_nll']:.3f} nats; CI by paired bootstrap over chunks)",
                  "", "| arm | β | ΔNLL (nats) | 95% CI | KL (nats) | top-1 agree | targets/chunk |", "|---|---|---|---|---|---|---|"]
        for r in s["rows"]:
            lo, hi = r["delta_nll_ci95"]
            per_chunk = np.mean([len(t) for t in r["target_tokens"]])
            lines.append(f"| {r['arm']} | {r['beta']:g} | {r['delta_nll']:+.4f} | [{lo:+.4f}, {hi:+.4f}] | {r['kl_mean']:.4f} "
                         f"| {r['top1_agreement']:.3f} | {per_chunk:.1f} |")
        lines += ["", _calibration_line(s["calibrations"], "dev positions", 1)]
    return "\n".join(lines) + "\n"


def _calibration_line(calibrations: dict, unit: str, scale: float) -> str:
    loose, default = calibrations["loose"], calibrations["default"]
    gains = sorted((t["gain"] * scale for t in loose["trials"]), reverse=True)
    return (f"Head search (β = 0.4, loose target): {loose['n_tried']} heads tried one at a time on {loose['dev_size']} {unit} "
            f"in {loose['seconds']:.0f} s; {len(loose['kept_heads'])} improved the dev metric (best single-head gain "
            f"{gains[0]:+.4f}, median {gains[len(gains) // 2]:+.4f}). With the default thresholds the rule marks no "
            f"token, so the search kept {len(default['kept_heads'])} heads.")


PARTS = ("interventions", "longcontext", "mechanisms")


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--part" and sys.argv[2] != "interventions":
        part, rest = sys.argv[2], sys.argv[3:]
        if part not in PARTS:
            raise SystemExit(f"evidence: --part must be one of {', '.join(PARTS)}")
        from benchmarks import evidence_longcontext, evidence_mechanisms

        if part == "longcontext":
            return evidence_longcontext.main(rest)
        sys.argv = [sys.argv[0], *rest]
        return evidence_mechanisms.main()
    if len(sys.argv) > 2 and sys.argv[1] == "--part":
        del sys.argv[1:3]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder with stsbenchmark/ and tinyshakespeare.txt")
    parser.add_argument("--only", choices=("minilm", "smollm2"))
    parser.add_argument("--quick", action="store_true", help="small subsets, to check the script runs")
    parser.add_argument("--out", default=str(paths.cache_dir() / "evidence.json"))
    args = parser.parse_args()
    data = Path(args.data)
    target = Path(args.out)
    evidence = json.loads(target.read_text()) if target.exists() and args.only else {}
    evidence["version"] = sinkfix.__version__
    for name, job in (("minilm", minilm), ("smollm2", smollm2)):
        if args.only in (None, name):
            evidence[name] = job(data, args.quick)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(evidence, indent=1) + "\n")  # after each model, so a crash keeps the first
    target.with_suffix(".md").write_text(markdown(evidence))
    print(markdown(evidence))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
