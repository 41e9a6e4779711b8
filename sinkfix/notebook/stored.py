"""How a stored evaluation or experiment (``sinkfix.store.results.StoredResult``) shows itself in a
notebook: a compact HTML summary of its numbers, and a ``.plot`` with the dashboard's charts of its kind.

One registry entry per kind (``KINDS``). A new kind of experiment gets both with a few lines: a
``facts`` function (the numbers its summary lists, formatted with ``sinkfix.units``) and a chart class
in ``experiment_plots``. A kind without an entry still renders its scalar fields.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from sinkfix import units
from sinkfix.units import MISSING
from sinkfix.analysis.display import show_token
from sinkfix.errors import MissingExtraError, SettingsError
from sinkfix.notebook.render import BOX, CELL

Facts = list[tuple[str, str]]


def _intervention(e: dict) -> Facts:
    return [("intervention", f"target {e.get('target')}, β {e.get('beta')}"
             + ("" if e.get("heads") is None else f", {len(e['heads'])} heads"))]


def _evaluation(e: dict) -> Facts:
    low, high = e.get("delta_nll_ci95") or (None, None)
    facts = _intervention(e) + [("texts · chunks · positions", f"{e.get('n_texts')} · {e.get('n_chunks')} · "
                                                                f"{e.get('n_positions')}")]
    if e.get("baseline_nll") is not None:
        facts += [("NLL before → after", f"{units.number(e.get('baseline_nll'))} → "
                                         f"{units.number(e.get('intervened_nll'))} nats"),
                  ("ΔNLL, 95% CI", f"{units.nats(e.get('delta_nll'))} {units.interval(low, high)}"),
                  ("KL (nats) · top-1 agreement", f"{units.number(e.get('kl_mean'))} · "
                                                  f"{units.percent(e.get('top1_agreement'))}")]
    return facts + [("cosine of final hidden states", units.number(e.get("cosine_mean")))]


def _sts(e: dict) -> Facts:
    low, high = e.get("delta_ci95") or (None, None)
    return _intervention(e) + [
        ("Spearman before → after", f"{units.number(e.get('baseline_spearman'))} → "
                                    f"{units.number(e.get('intervened_spearman'))}"),
        ("ΔSpearman, 95% CI", f"{units.number(e.get('delta_spearman'), '+.4f')} {units.interval(low, high)}"),
        ("pairs", str(e.get("n_pairs")))]


def _lab(e: dict) -> Facts:
    return [(f"{variant}: first-token mass", f"{units.number(m['first_token_mass']['mean'], '.3f')} "
             f"{units.interval(*m['first_token_mass']['ci95'], spec='.3f')}")
            for variant, m in (e.get("variants") or {}).items()]


def _streaming(e: dict) -> Facts:
    return [("mode · window · tokens", f"{e.get('mode')} · {e.get('window')} · {e.get('n_tokens')}"),
            ("dense ppl", units.ppl(e.get("dense_ppl")))] + [
        (str(r["name"]), f"ppl {units.ppl(r.get('ppl'))}") for r in e.get("settings") or []]


def _kvquant(e: dict) -> Facts:
    return [("chunks × tokens", f"{e.get('n_chunks')} × {e.get('max_tokens')}"),
            ("unquantised ppl", units.ppl(e.get("dense_ppl")))] + [
        (str(r["name"]), units.nats(r.get("delta_nll"))) for r in e.get("settings") or []]


def _sinkrate(e: dict) -> Facts:
    return [(f"Sink₁ ({kind})", f"{units.percent(r['rate'])} (95% CI {units.percent(r['ci95'][0])} to "
                                f"{units.percent(r['ci95'][1])})")
            for kind, r in (e.get("kinds") or {}).items()] + [("sequences × tokens", f"{e.get('n')} × {e.get('length')}")]


def _massive(e: dict) -> Facts:
    top = e.get("top") or {}
    return [("largest |h|", f"{top.get('max_abs', 0):,.0f} ({units.ratio(top.get('ratio'))} the median)"),
            ("where", f"layer {top.get('layer')}, dim {top.get('dim')}, token #{top.get('token')} "
                      f"{show_token(str(top.get('token_text', '')))}"),
            ("first massive layer", str(e.get("first_massive_layer")))]


def _evict(e: dict) -> Facts:
    s, dense = e.get("settings") or {}, e.get("dense") or {}
    facts = [("task · lengths · prompts", f"{e.get('task')} · {s.get('lengths')} · {len(e.get('prompts') or [])}"),
             ("presses × ratios × protections", f"{len(s.get('presses') or [])} × {len(s.get('ratios') or [])} × "
                                                f"{len(s.get('protections') or [])}")]
    accuracy = dense.get("accuracy")
    if accuracy:
        facts.append(("dense accuracy, 95% CI", f"{units.percent(accuracy['mean'])} "
                                                f"{units.interval(*accuracy['ci95'], spec='.0%')}"))
    return facts


def _profile(e: dict) -> Facts:
    return [("texts · source", f"{e.get('n_texts')} · {e.get('source')}"),
            ("where the three change together", str((e.get("together") or {}).get("sentence", MISSING)))]


def _scalars(e: dict) -> Facts:
    """An unregistered kind: its top-level numbers and short strings."""
    return [(k, f"{v:g}" if isinstance(v, float) else str(v)) for k, v in e.items()
            if isinstance(v, (int, float, str)) and len(str(v)) <= 80][:12]


@dataclass(frozen=True)
class Kind:
    """How one kind of stored result shows itself: a title, its facts, its chart class's name."""

    title: str
    facts: Callable[[dict], Facts] = _scalars
    plots: str = ""  # a class in sinkfix.notebook.experiment_plots; "" when the kind has no charts here


KINDS: dict[str, Kind] = {
    "evaluate": Kind("Evaluation", _evaluation, "EvaluationPlots"),
    "sts": Kind("STS-B evaluation", _sts, "StsPlots"),
    "lab": Kind("Lab sweep", _lab, "LabPlots"),
    "streaming": Kind("Window attention with sinks", _streaming, "StreamingPlots"),
    "kvquant": Kind("KV quantisation", _kvquant, "KvquantPlots"),
    "sinkrate": Kind("Sink-rate protocol", _sinkrate, "SinkratePlots"),
    "massive": Kind("Massive activations", _massive, "MassivePlots"),
    "evict": Kind("KV-cache eviction sweep", _evict, "EvictPlots"),
    "profile": Kind("Layer profile", _profile, "ProfilePlots"),
    "lengths": Kind("Context-length sweep", plots="LengthsPlots"),
    "bos": Kind("BOS ablation", plots="BosPlots"),
    "secondary": Kind("Secondary sinks", plots="SecondaryPlots"),
}


def kind_of(row: dict) -> Kind:
    return KINDS.get(str(row.get("kind")), Kind(f"Experiment ({row.get('kind')})"))


def plots_of(row: dict) -> object:
    """``row.plot``: the chart class of the row's kind, over the row."""
    kind = kind_of(row)
    if not kind.plots:
        raise SettingsError(f"no charts are registered for stored results of kind {row.get('kind')!r}")
    from sinkfix.notebook import experiment_plots

    return getattr(experiment_plots, kind.plots)(row)


def _chart_names(row: dict) -> str:
    try:
        plots = plots_of(row)
    except MissingExtraError:
        return 'charts need <code>pip install "sinkfix[viz]"</code>'
    except SettingsError:
        return "no charts for this kind"
    names = [n for n in dir(type(plots)) if not n.startswith("_") and callable(getattr(type(plots), n))]
    return "Charts: " + ", ".join(f"<code>.plot.{n}()</code>" for n in names)


def html_of(row: dict) -> str:
    """A stored result's summary: kind, id, model, when, label and headline, then its kind's facts."""
    kind = kind_of(row)
    headline = units.headline(str(row.get("kind")), row["headline"]) if row.get("headline") is not None else None
    facts = [("stored", units.when(row.get("created_at")))] + ([("label", str(row["label"]))] if row.get("label") else [])
    facts += ([("headline", headline)] if headline else []) + kind.facts(row.get("result") or {})
    cells = "".join(f'<tr><td style="{CELL}; color: #555">{escape(name)}</td><td style="{CELL}">{escape(value)}</td></tr>'
                    for name, value in facts)
    return (f'<div class="sinkfix-stored" style="{BOX}"><div><b>{escape(kind.title)} {escape(str(row.get("id")))}</b> · '
            f"{escape(str(row.get('model') or ''))}</div>"
            f'<table style="border-collapse: collapse; margin: 4px 0">{cells}</table>'
            f'<div style="color: #777; font-size: 11px">{_chart_names(row)}</div></div>')
