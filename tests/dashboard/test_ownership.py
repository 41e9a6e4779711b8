"""Each signed-in visitor's rows are their own (issue 32, item 1), through AppTest with the stubbed OIDC provider:
two visitors, every page, deep link, picker, search box and stored table; 0 reads of the other's private rows.
Shared rows are read by the other visitor, who sees who shared them and no toggle to change them."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import sinkfix
from sinkfix.analysis.corpus import summarize_stored
from sinkfix.policy.ownership import Viewer
from sinkfix.store import Store

from .conftest import HOME, open_as, page_text

VISITORS = ("ada@lab.example", "bob@lab.example")
EVALUATION = {"target": "first", "beta": 0.0, "layers": None, "heads": None, "n_texts": 1, "n_chunks": 1,
              "n_positions": 4, "baseline_nll": 3.0, "intervened_nll": 3.5, "delta_nll": 0.5,
              "delta_nll_ci95": [0.2, 0.8], "ci_unit": "position", "kl_mean": 0.3, "top1_agreement": 0.75,
              "cosine_mean": 0.9}
CALIBRATION = {"task": "nll", "metric": "nll", "kept_heads": [[0, 1]], "dev_baseline": 3.0, "n_tried": 2,
               "heldout": {"target": {"delta_nll": -0.1, "delta_nll_ci95": [-0.2, 0.0]}}}


def _mark(email: str) -> str:
    return f"Secret{email.split('@')[0].title()}Marker"


@pytest.fixture(scope="module")
def analyses(minilm: sinkfix.LoadedModel) -> dict[str, sinkfix.Analysis]:
    texts = {email: f"{_mark(email)} says the heron sat on the mat." for email in VISITORS}
    texts |= {f"{email} line": f"{_mark(email)} corpus line one." for email in VISITORS}
    return {key: sinkfix.analyze(text, minilm) for key, text in texts.items()}


@pytest.fixture()
def seeded(db_path: Path, analyses: dict, minilm: sinkfix.LoadedModel) -> dict[str, dict]:
    """Each visitor owns a private run, corpus, experiment, evaluation and calibration, each showing their marker."""
    store, rows = Store(db_path), {}
    for email in VISITORS:
        viewer, mark = Viewer(email), _mark(email)
        settings = analyses[email].settings.to_dict()
        corpus_id = store.open_corpus(f"{mark}-corpus", "minilm", settings, "lines.txt", viewer=viewer)
        store.save_corpus_runs(corpus_id, [(1, analyses[f"{email} line"], f"line-{email}")])
        summary = summarize_stored(store, corpus_id, analyses[email].settings.epsilon, viewer=viewer)
        store.save_corpus_summary(corpus_id, summary.to_json())
        rows[email] = {
            "mark": mark, "run": store.save(analyses[email], viewer=viewer), "corpus": f"{mark}-corpus",
            "experiment": store.save_experiment("massive", _massive(mark), f"{mark} label", 4100.0, viewer=viewer),
            "evaluation": store.save_evaluation("evaluate", {**EVALUATION, "model": f"{mark}-model"}, viewer=viewer),
            "calibration": f"{mark}-heads",
        }
        store.save_calibration(f"{mark}-heads", {**CALIBRATION, "model": f"{mark}-model"}, viewer=viewer)
    return rows


def _massive(mark: str) -> dict:
    top = {"max_abs": 2543.2, "value": -2543.2, "layer": 2, "dim": 1415, "token": 0, "token_text": mark,
           "ratio": 4100.0, "median_abs": 0.62}
    return {"model": f"{mark}-model", "bos": "auto", "tokens": [mark, "x"], "layers": [{"layer": 2}], "top": top,
            "top_features": [top], "peak": [[2543.2, 1.0]], "first_massive_layer": 2, "massive_dims": [1415],
            "link": {"spearman_sink_rate": None, "spearman_value_norm": None, "value_norm_layer": 1},
            "intervention": None, "notes": []}


def everything(app: AppTest) -> str:
    """Every element the page sent (its protobuf, widget options included) and every table's cells, as text."""
    parts = []
    for node in app._tree:
        parts.append(str(getattr(node, "proto", "")))
        if getattr(node, "type", "") == "arrow_data_frame":
            parts.append(node.value.to_csv())
    return "\n".join(parts)


def leaks(mark: str) -> tuple[str, ...]:
    """What of a visitor's rows no other visitor may see: the run's and corpus line's texts, the corpus's,
    experiment's and calibration's names, the model names in the experiment, evaluation and calibration."""
    return (f"{mark} says", f"{mark} corpus line", f"{mark}-corpus", f"{mark} label", f"{mark}-model", f"{mark}-heads")


def routes(own: dict, other: dict) -> list[tuple[str, str | None, dict, str | None]]:
    """(what, page, query, the error a missing row gets) for every way a page reads stored rows."""
    run = str(other["run"])
    return [
        ("home: latest runs", None, {}, None),
        ("History table, model filter, export", "views/history.py", {}, None),
        ("Analyze deep link", "views/analyze.py", {"run": run}, f"no run with id {run}"),
        ("Drill-down deep link and recent picker", "views/drilldown.py", {"run": run}, f"no run with id {run}"),
        ("Long-run deep link", "views/longrun.py", {"run": run}, f"no run with id {run}"),
        ("Compare deep link and picker", "views/compare.py", {"runs": f"{own['run']},{run}"}, f"no run with id {run}"),
        ("Corpus list and deep link", "views/corpus.py", {"corpus": other["corpus"]},
         f"No corpus is named '{other['corpus']}'"),
        ("Mechanisms deep link and stored table", "views/experiments.py", {"mechanism": str(other["experiment"])},
         f"no stored mechanism experiment has id {other['experiment']}"),
        ("Evaluate deep link, stored tables, findings", "views/evaluate.py",
         {"evaluation": str(other["evaluation"])}, f"no evaluation with id {other['evaluation']}"),
        ("Evaluate calibration link", "views/evaluate.py", {"calibration": other["calibration"]},
         f"no calibration named '{other['calibration']}'"),
    ]


def test_two_visitors_never_read_each_others_private_rows(seeded: dict[str, dict], load_calls: list[str]) -> None:
    reads, checked = {}, 0
    for email, other_email in (VISITORS, VISITORS[::-1]):
        own, other = seeded[email], seeded[other_email]
        for what, page, query, missing in routes(own, other):
            app = open_as(email, page, **query)
            assert not app.exception, (what, [e.message for e in app.exception])
            shown = everything(app)
            asked = set(query.values())  # a name the visitor typed may come back in the error that answers it
            reads[f"{email}: {what}"] = sum(shown.count(leak) for leak in leaks(other["mark"]) if leak not in asked)
            if missing is not None:
                assert any(missing in e.value for e in app.error), (what, [e.value for e in app.error])
            checked += 1
        mine = everything(open_as(email, "views/history.py"))
        assert f"{own['mark']} says" in mine  # the same page does list the visitor's own run
    search = open_as(VISITORS[1], "views/history.py")
    search.text_input(key="hi_text").set_value(seeded[VISITORS[0]]["mark"]).run()
    reads["search box"] = sum(everything(search).count(leak) for leak in leaks(seeded[VISITORS[0]]["mark"]))
    assert "**0** matching runs" in page_text(search)
    assert checked == 20 and sum(reads.values()) == 0, {k: v for k, v in reads.items() if v}
    assert load_calls == []  # no page loaded a model to answer


def test_a_shared_run_is_read_with_its_owner_named_and_no_toggle(seeded: dict[str, dict], db_path: Path,
                                                                 load_calls: list[str]) -> None:
    ada, bob = VISITORS
    run = str(seeded[ada]["run"])
    owner = open_as(ada, "views/drilldown.py", run=run)
    assert [t.label for t in owner.toggle] == ["Shared with other visitors"] and owner.toggle[0].value is False
    owner.toggle[0].set_value(True).run()  # the owner shares it from the page
    assert Store(db_path).sharing("run", int(run), viewer=Viewer(bob))["shared"] is True
    other = open_as(bob, "views/drilldown.py", run=run)
    assert not other.exception and not other.error
    assert "says the heron" in page_text(other) and not other.toggle  # readable, not changeable
    assert "Shared by ada@lab\\.example" in page_text(other)
    history = open_as(bob, "views/history.py")
    assert f"{seeded[ada]['mark']} says" in everything(history)


def test_named_dashboard_tokens_sign_in_as_their_names(db_path: Path, analyses: dict, load_calls: list[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard import access

    monkeypatch.setenv("SINKFIX_DASHBOARD_TOKENS", "ada=ada-token-0123456789,bob=bob-token-0123456789")
    monkeypatch.setattr(access, "WRONG_TOKEN_PAUSE", 0.0)
    Store(db_path).save(analyses[VISITORS[0]], viewer=Viewer("ada"))
    shown = {}
    for name in ("ada", "bob"):
        app = AppTest.from_file(HOME, default_timeout=120).run()
        app.text_input(key="_sinkfix_token").set_value(f"{name}-token-0123456789")
        app = app.button[0].click().run()
        app.switch_page("views/history.py").run()
        shown[name] = everything(app)
        assert f"Signed in as {name}" in "\n".join(c.value for c in app.sidebar.caption)
    assert _mark(VISITORS[0]) in shown["ada"] and _mark(VISITORS[0]) not in shown["bob"]


def test_a_shared_corpus_with_the_visitors_own_name_can_be_picked(seeded: dict[str, dict], db_path: Path,
                                                                 analyses: dict, load_calls: list[str]) -> None:
    ada, bob = VISITORS
    store = Store(db_path)
    for email in VISITORS:  # both own a corpus named "pets"; bob's holds his marker line
        viewer = Viewer(email)
        corpus_id = store.open_corpus("pets", "minilm", analyses[email].settings.to_dict(), "pets.txt", viewer=viewer)
        store.save_corpus_runs(corpus_id, [(1, analyses[f"{email} line"], f"pets-{email}")])
    store.set_shared("corpus", "pets", True, viewer=Viewer(bob))
    app = open_as(ada, "views/corpus.py", corpus="pets")
    assert not app.exception and not app.error
    picker = app.selectbox(key="corpus")
    assert "pets" in picker.options and f"pets ({bob})" in picker.options
    assert f"{seeded[ada]['mark']} corpus line" in everything(app)  # the plain name is ada's own
    assert app.toggle and app.toggle[0].label == "Shared with other visitors"
    theirs = picker.set_value(f"pets ({bob})").run()
    assert not theirs.exception and not theirs.error
    shown = everything(theirs)
    assert f"{seeded[bob]['mark']} corpus line" in shown and f"{seeded[ada]['mark']} corpus line" not in shown
    assert not theirs.toggle and "Shared by bob@lab\\.example" in page_text(theirs)
    linked = open_as(ada, "views/corpus.py", corpus=f"pets ({bob})")  # the entry is a deep link too
    assert f"{seeded[bob]['mark']} corpus line" in everything(linked)
