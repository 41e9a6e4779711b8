"""The docs' evidence for the 2025 findings (docs/experiments/mechanisms.md, "Sinks across layers, lengths
and positions"): the four commands at their default settings on SmolLM2, and where they apply on MiniLM.

    .venv/bin/python benchmarks/evidence_findings.py [--data ../shared/data] [--only profile,lengths,bos,secondary]
        [--quick] [--docs-images]

Writes cache/evidence_findings.json, cache/evidence_findings.md and each run's chart as a PNG
(``--docs-images``: into docs/img/ instead, as the docs show them), and times each run (wall and this
process's CPU seconds; on a shared machine the CPU figure is the steadier one). What each part runs is
what the CLI runs with its defaults:
- profile:   sinkfix profile --file tinyshakespeare.txt (32 windows of 256 tokens), also with --bos always;
- lengths:   sinkfix lengths (T = 64 .. 8192, 4 windows; MiniLM: 64 .. 512);
- bos:       sinkfix bos (T = 64 .. 2048, 8 windows, four arms; causal LMs only, so not MiniLM);
- secondary: sinkfix secondary (16 windows of 512 tokens, α > 0.3 in >= 30% of a layer's heads).
``--quick`` runs a few windows and short lengths (a smoke test of the script, not evidence).
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

import sinkfix  # noqa: E402
from sinkfix import paths  # noqa: E402
from sinkfix.experiments import bos_ablation, lengths, profile, secondary  # noqa: E402
from sinkfix.experiments.windows import shown as ci  # noqa: E402

PARTS = ("profile", "lengths", "bos", "secondary")


def say(message: str) -> None:
    print(f"[evidence_findings] {message}", file=sys.stderr, flush=True)


def timed(label: str, work) -> tuple[dict, dict]:
    say(f"{label} ...")
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    clock = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(time.process_time() - cpu, 1)}
    say(f"{label}: {clock['wall_s']} s wall, {clock['cpu_s']} s CPU")
    return result.to_json(), clock


def collect(data: Path, only: tuple[str, ...] = PARTS, quick: bool = False) -> dict:
    text = (data / "tinyshakespeare.txt").read_text(encoding="utf-8")
    name = "tinyshakespeare.txt"
    smollm2, minilm = sinkfix.get_model("smollm2-135m"), sinkfix.get_model("minilm")
    out: dict = {"quick": quick, "runs": {}, "threads": os.environ.get("OMP_NUM_THREADS", "default")}

    def keep(key: str, label: str, work) -> None:
        result, clock = timed(label, work)
        out["runs"][key] = {"result": result, "clock": clock}

    n = 4 if quick else None
    if "profile" in only:
        for key, model, bos in (("profile smollm2", smollm2, "auto"), ("profile smollm2 bos", smollm2, "always"),
                                ("profile minilm", minilm, "auto")):
            keep(key, key, lambda m=model, b=bos: profile.profile_corpus(
                m, text, name, n or profile.DEFAULT_WINDOWS, 64 if quick else profile.DEFAULT_LENGTH, b))
    if "lengths" in only:
        short = [64, 128] if quick else None
        keep("lengths smollm2", "lengths smollm2",
             lambda: lengths.length_sweep(smollm2, text, name, short, n or lengths.DEFAULT_WINDOWS))
        keep("lengths minilm", "lengths minilm",
             lambda: lengths.length_sweep(minilm, text, name, short, n or lengths.DEFAULT_WINDOWS))
    if "bos" in only:
        keep("bos smollm2", "bos smollm2", lambda: bos_ablation.bos_ablation(
            smollm2, text, name, (64, 128) if quick else bos_ablation.DEFAULT_LENGTHS, n or bos_ablation.DEFAULT_WINDOWS))
    if "secondary" in only:
        for key, model in (("secondary smollm2", smollm2), ("secondary minilm", minilm)):
            keep(key, key, lambda m=model: secondary.secondary_sinks(
                m, text, name, n or secondary.DEFAULT_WINDOWS, 128 if quick else secondary.DEFAULT_LENGTH))
    return out


# ---------------------------------------------------------------- markdown


def rate(entry: dict) -> str:
    if entry["value"] is None:
        return f"undefined (flags 0 of {entry['total']})" if entry["total"] == 0 else "—"
    bounds = "" if entry["ci95"] is None else f" [{entry['ci95'][0]:.2f}, {entry['ci95'][1]:.2f}]"
    return f"{entry['value']:.2f}{bounds} ({entry['hits']}/{entry['total']})"


def profile_md(key: str, run: dict) -> list[str]:
    r = run["result"]
    lines = [f"**{key}**: n = {r['n_texts']} windows of {r['lengths'][0]} tokens of {r['source']}, ε = {r['epsilon']}, "
             f"BOS {r['bos']}; mean [95% bootstrap CI over windows]; {run['clock']['wall_s']} s wall, "
             f"{run['clock']['cpu_s']} s CPU.", "",
             "| layer | token-0 norm | median norm | sink rate | token-0 α | repr. entropy (nats) |", "|---|---|---|---|---|---|"]
    for row in r["layers"]:
        lines.append(f"| {row['layer']} | {ci(row['token0_norm'], 1)} | {ci(row['median_norm'], 1)} | "
                     f"{ci(row['sink_rate'], 2)} | {ci(row['token0_alpha'], 2)} | {ci(row['repr_entropy'], 2)} |")
    return lines + ["", f"> {r['together']['sentence']}", ""]


def lengths_md(key: str, run: dict) -> list[str]:
    r = run["result"]
    lines = [f"**{key}**: n = {r['n_windows']} windows of {r['corpus']}, ε = {r['epsilon']}; mean [95% CI over "
             f"windows]; one forward per window: {r['one_forward']}; {run['clock']['wall_s']} s wall, "
             f"{run['clock']['cpu_s']} s CPU.", "",
             "| T | Sink₁^ε | first-token mass | second half of queries | token-0 norm | ÷ median norm |",
             "|---|---|---|---|---|---|"]
    for row in r["lengths"]:
        lines.append(f"| {row['length']} | {ci(row['sink_rate'])} | {ci(row['first_token_mass'])} | "
                     f"{ci(row['late_first_token_mass'])} | {ci(row['token0_norm'], 1)} | {ci(row['token0_norm_ratio'], 1)} |")
    t = r["trend"]
    lines += ["", f"Paired per window, T = {t['from']} → {t['to']}: sink rate {ci(t['sink_rate'])} "
              f"({t['sink_rate_verdict']}); first-token mass {ci(t['first_token_mass'])} ({t['first_token_mass_verdict']}); "
              f"second half of queries {ci(t['late_first_token_mass'])} ({t['late_first_token_mass_verdict']}).", ""]
    return lines


def bos_md(key: str, run: dict) -> list[str]:
    r = run["result"]
    arms = r["arms"]
    lines = [f"**{key}**: n = {r['n_windows']} windows of {r['corpus']}, BOS `{r['bos_token']}`, token 0 masked from "
             f"layer {r['mask_from_layer']} on in the masked arms; mean [95% CI over windows]; "
             f"{run['clock']['wall_s']} s wall, {run['clock']['cpu_s']} s CPU.", "",
             "| T | " + " | ".join(f"NLL {a}" for a in arms) + " | " + " | ".join(f"Sink₁ {a}" for a in arms) + " |",
             "|---|" + "---|" * (2 * len(arms))]
    for row in r["lengths"]:
        cells = [ci(row["arms"][a]["nll"]) for a in arms] + [ci(row["arms"][a]["sink_rate"], 2) for a in arms]
        lines.append(f"| {row['length']} | " + " | ".join(cells) + " |")
    names = list(r["lengths"][0]["comparisons"])
    for key, what in (("delta_nll", "all T − 1 targets"), ("delta_nll_late", "the second half of the window's tokens")):
        lines += ["", f"Paired differences (arm − reference), ΔNLL in nats per token over {what}:", "",
                  "| T | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for row in r["lengths"]:
            lines.append(f"| {row['length']} | " + " | ".join(ci(row["comparisons"][c][key], 4) for c in names) + " |")
    return lines + [""]


def secondary_md(key: str, run: dict) -> list[str]:
    r = run["result"]
    lines = [f"**{key}**: {len(r['sinks'])} secondary sinks among {r['n_candidates']} candidate positions "
             f"(n = {r['n_windows']} windows of {r['length']} tokens; α > {r['epsilon']} in ≥ {100 * r['share']:.0f}% of "
             f"a layer's heads; ≥ {r['min_queries']} visible queries); token 0 massive in "
             f"{100 * r['token0_massive']:.0f}% of windows; {run['clock']['wall_s']} s wall, {run['clock']['cpu_s']} s CPU.",
             "", "| token | kind | sinks / occurrences | layers (most frequent) | with a massive activation |",
             "|---|---|---|---|---|"]
    for row in r["by_token"][:10]:
        lines.append(f"| `{row['token']}` | {row['kind']} | {row['sinks']} / {row['occurrences']} | "
                     f"{', '.join(map(str, row['layers']))} | {row['massive']} |")
    lines += ["", "By kind (sinks / candidates): " + "; ".join(f"{k['kind']} {k['sinks']}/{k['candidates']}"
                                                              for k in r["by_kind"]), "",
              "| predictor | precision [95% CI] | recall [95% CI] |", "|---|---|---|",
              f"| massive activation (Sun et al.) | {rate(r['predictor']['precision'])} | {rate(r['predictor']['recall'])} |"]
    for step in r["ladder"][1:]:
        lines.append(f"| peak ≥ {step['ratio']:.0f}× median | {rate(step['precision'])} | {rate(step['recall'])} |")
    return lines + [""]


def markdown(evidence: dict) -> str:
    writers = {"profile": profile_md, "lengths": lengths_md, "bos": bos_md, "secondary": secondary_md}
    lines = [f"Threads: {evidence['threads']}{' (quick: not evidence)' if evidence['quick'] else ''}.", ""]
    for key, run in evidence["runs"].items():
        lines += writers[key.split()[0]](key, run)
    return "\n".join(lines) + "\n"


def figures(evidence: dict, folder: Path, docs: bool = False) -> list[Path]:
    """Each run's chart as a PNG (the builders the page uses); ``docs``: 256-colour copies small enough to track."""
    import io

    from PIL import Image

    from sinkfix.plots import lengths as length_charts
    from sinkfix.plots import profile as profile_charts
    from sinkfix.plots import secondary as secondary_charts

    builders = {"profile": profile_charts.profile_chart, "lengths": length_charts.lengths_chart,
                "bos": length_charts.bos_chart, "secondary": secondary_charts.prediction_chart}
    written = []
    for key, run in evidence["runs"].items():
        buffer = io.BytesIO()
        builders[key.split()[0]](run["result"]).save(buffer, format="png")
        path = folder / f"findings-{key.replace(' ', '-')}.png"
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        if docs:
            image = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        image.save(path, optimize=True)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SINKFIX_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS))
    parser.add_argument("--quick", action="store_true", help="a few short windows: checks the script, not evidence")
    parser.add_argument("--docs-images", action="store_true", help="also write the charts to docs/img/ (tracked)")
    args = parser.parse_args()
    only = tuple(p.strip() for p in args.only.split(",") if p.strip())
    evidence = collect(args.data, only, args.quick)
    cache = paths.cache_dir()
    suffix = "" if set(only) == set(PARTS) else "_" + "_".join(only)
    (cache / f"evidence_findings{suffix}.json").write_text(json.dumps(evidence, indent=1))
    (cache / f"evidence_findings{suffix}.md").write_text(markdown(evidence))
    for path in figures(evidence, ROOT / "docs" / "img" if args.docs_images else cache, args.docs_images):
        say(f"wrote {path}")
    print(markdown(evidence))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
