"""Batch: reading corpus files, the corpus summary (against hand-worked numbers), resume after an interrupt."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sinkfix
from sinkfix.engines import local
from sinkfix.engines.local import CorpusLine, read_corpus
from sinkfix.cli import main
from sinkfix.analysis.corpus import FIRST_TOKEN, CorpusSummary, RunStats, summarize, summarize_stored
from sinkfix.errors import InputError, StoreError
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store
from tests.synthetic import synthetic_analysis

LINES = ["The cat sat on the mat.", "A dog ran.", "Birds fly south in winter.", "The cat sat on the mat, again."]


def stats_of(analysis: sinkfix.Analysis) -> RunStats:
    """RunStats straight from an Analysis's arrays (the store path reads its plain tables instead)."""
    return RunStats(analysis.tokens, analysis.alpha.max(axis=-1), analysis.sink_rate, analysis.value_norm,
                    analysis.labels)


# ---------------------------------------------------------------- reading files


def test_text_file_one_input_per_line_blank_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("first line\n\n   \n  second line  \r\nthird\n", encoding="utf-8")
    assert read_corpus(path) == [CorpusLine(1, "first line"), CorpusLine(4, "second line"), CorpusLine(5, "third")]


def test_jsonl_by_extension_or_by_content(tmp_path: Path) -> None:
    records = [{"text": "one", "id": 7}, {"text": "two"}]
    body = "\n".join(json.dumps(r) for r in records) + "\n\n" + json.dumps({"text": "  "}) + "\n"
    for name in ("c.jsonl", "c.txt"):
        path = tmp_path / name
        path.write_text(body)
        assert read_corpus(path) == [CorpusLine(1, "one"), CorpusLine(2, "two")]
    # A plain text file whose first line merely looks like JSON of another kind stays plain text.
    path = tmp_path / "list.txt"
    path.write_text('["a", "b"]\nplain\n')
    assert read_corpus(path) == [CorpusLine(1, '["a", "b"]'), CorpusLine(2, "plain")]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("c.jsonl", '{"text": "ok"}\n{"txt": "x"}\n', 'line 2: a JSONL corpus needs an object with a "text" field'),
    ("c.jsonl", '{"text": "ok"}\n\n{broken\n', "line 3: not valid JSON"),
    ("c.jsonl", '{"text": 5}\n', '"text" must be a string, got int'),
    ("c.txt", "\n  \n\n", "has no inputs: every line is blank"),
])
def test_bad_corpus_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_corpus(path)


def test_missing_or_binary_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="corpus file not found"):
        read_corpus(tmp_path / "nope.txt")
    (tmp_path / "bin.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_corpus(tmp_path / "bin.txt")


# ---------------------------------------------------------------- the summary


def hand_runs() -> list[RunStats]:
    """Three inputs on a 1-layer, 2-head model; the expected numbers below are worked out by hand."""
    return [
        RunStats(["[CLS]", "the", ".", "[SEP]"], np.array([[0.5, 0.2]]), [1.0, 0.0, 0.5, 0.5],
                 [0.1, 1.0, 0.4, 0.2], ["beneficial", "neutral", "neutral", "detrimental"]),
        RunStats(["[CLS]", "a", "[SEP]"], np.array([[0.4, 0.35]]), [0.5, 0.0, 1.0],
                 [0.2, 1.0, 0.3], ["beneficial", "neutral", "neutral"]),
        RunStats(["[CLS]", ".", ".", "[SEP]"], np.array([[0.3, 0.25]]), [0.5, 0.5, 0.0, 0.0],
                 [0.3, 0.6, 0.8, 1.0], ["beneficial", "detrimental", "neutral", "neutral"]),
    ]


def test_summary_matches_a_hand_computation() -> None:
    summary = summarize(hand_runs(), epsilon=0.3)
    assert summary.n_inputs == 3
    # Head 0: top alpha 0.5, 0.4, 0.3 -> above 0.3 (strictly) in 2 of 3 inputs. Head 1: 0.2, 0.35, 0.25 -> 1 of 3.
    np.testing.assert_allclose(summary.head_sink_rate, [[2 / 3, 1 / 3]])
    np.testing.assert_allclose(summary.head_mean_top_alpha, [[0.4, 0.8 / 3]])
    # Inputs 1 and 3 hold a detrimental token.
    assert summary.n_detrimental_inputs == 2 and summary.detrimental_fraction == pytest.approx(2 / 3)
    types = {t.token: t for t in summary.token_types}
    # "the" and "a" never sink, so they are not listed; ties on sinks and inputs go to the higher mean Sink_j.
    assert [t.token for t in summary.token_types] == [FIRST_TOKEN, "[SEP]", "."]
    first, sep, dot = types[FIRST_TOKEN], types["[SEP]"], types["."]
    assert (first.occurrences, first.sinks, first.inputs, first.detrimental) == (3, 3, 3, 0)
    assert first.mean_sink_rate == pytest.approx(2 / 3) and first.mean_value_norm == pytest.approx(0.2)
    assert first.examples == ["[CLS]"] and first.sink_share == 1.0
    assert (sep.occurrences, sep.sinks, sep.inputs, sep.detrimental) == (3, 2, 2, 1)
    assert sep.mean_sink_rate == pytest.approx(0.75) and sep.mean_value_norm == pytest.approx(0.25)
    assert (dot.occurrences, dot.sinks, dot.inputs, dot.detrimental) == (3, 2, 2, 1)
    assert dot.mean_sink_rate == pytest.approx(0.5) and dot.mean_value_norm == pytest.approx(0.5)
    assert dot.sink_share == pytest.approx(2 / 3)
    assert CorpusSummary.from_json(summary.to_json()).to_dict() == summary.to_dict()


def test_stored_summary_reads_the_same_numbers_as_the_analyses(db_path: Path) -> None:
    """The store path (plain per-token and per-head tables) agrees with the Analysis arrays; a run
    listed on two lines counts twice."""
    analyses = [synthetic_analysis(n_layers=3, n_heads=4, n_tokens=5 + i, seed=i, text=f"text {i}") for i in range(3)]
    store = Store(db_path)
    ids = [store.save(a, viewer=LOCAL) for a in analyses]
    corpus_id = store.open_corpus("synthetic", "synthetic", analyses[0].settings.to_dict(), "", viewer=LOCAL)
    for line_no, run_id in zip((1, 2, 3, 5), [*ids, ids[0]]):
        store.add_corpus_run(corpus_id, line_no, run_id)
    stored = summarize_stored(store, corpus_id, epsilon=0.3, viewer=LOCAL)
    expected = summarize([stats_of(a) for a in [*analyses, analyses[0]]], epsilon=0.3)
    assert stored.to_dict() == expected.to_dict()
    assert stored.n_inputs == 4 and stored.head_sink_rate.shape == (3, 4)


def test_corpus_keeps_one_model_and_one_set_of_settings(db_path: Path) -> None:
    store = Store(db_path)
    settings = sinkfix.AnalysisSettings().resolved(6).to_dict()
    first = store.open_corpus("c", "minilm", settings, "a.txt", viewer=LOCAL)
    assert store.open_corpus("c", "minilm", settings, "a.txt", viewer=LOCAL) == first
    with pytest.raises(StoreError, match="corpus 'c' was built with model minilm"):
        store.open_corpus("c", "smollm2-135m", settings, "a.txt", viewer=LOCAL)
    with pytest.raises(StoreError, match="give another --corpus name"):
        store.open_corpus("c", "minilm", {**settings, "epsilon": 0.2}, "a.txt", viewer=LOCAL)


# ---------------------------------------------------------------- the CLI on minilm


@pytest.fixture()
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(f"{LINES[0]}\n\n{LINES[1]}\n{LINES[2]}\n{LINES[3]}\n")  # lines 1, 3, 4, 5
    return path


def test_batch_resumes_after_an_interrupt(corpus_file: Path, db_path: Path, minilm, monkeypatch, capsys) -> None:
    real = local.analyze_many
    calls: list[str] = []

    def interrupting(texts, model, settings=None, batch_size=None, progress=None):
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived during the third forward pass
        calls.extend(texts)
        return real(texts, model, settings, batch_size=batch_size)

    monkeypatch.setattr(local, "analyze_many", interrupting)
    assert main(["batch", str(corpus_file), "--model", "minilm", "--quiet", "--batch-size", "1"]) == 130
    err = capsys.readouterr().err
    assert "interrupted after 2 of 4 lines" in err and "rerun the same command to resume" in err
    store = Store(db_path)
    corpus = store.corpus("tiny", viewer=LOCAL)
    assert store.count(viewer=LOCAL) == 2 and corpus["summary"] is None
    assert [r["line_no"] for r in store.corpus_runs(corpus["id"], viewer=LOCAL)] == [1, 3]

    calls.clear()
    def counting(texts, model, settings=None, batch_size=None, progress=None):
        calls.extend(texts)
        return real(texts, model, settings, batch_size=batch_size)

    monkeypatch.setattr(local, "analyze_many", counting)
    assert main(["batch", str(corpus_file), "--model", "minilm", "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert calls == LINES[2:]  # only the lines the interrupted run never reached
    assert "4 lines: 2 analysed, 2 served from the store" in captured.err
    # Progress on stderr: captured stderr is no terminal, so plain lines, from the 2 stored to the end.
    assert "... corpus tiny: 2/4\n" in captured.err and "... corpus tiny: 4/4 (" in captured.err
    assert "\r" not in captured.err
    report = json.loads(captured.out)  # stdout holds only the JSON
    rows = store.corpus_runs(corpus["id"], viewer=LOCAL)
    assert [r["line_no"] for r in rows] == [1, 3, 4, 5] and [r["text"] for r in rows] == LINES
    assert store.count(viewer=LOCAL) == 4 and len({r["run_id"] for r in rows}) == 4  # nothing stored twice
    assert report["runs"] == [{"line_no": r["line_no"], "run_id": r["run_id"]} for r in rows]

    # The stored summary is the summary of the four runs, computed here from their arrays.
    expected = summarize([stats_of(store.get(r["run_id"], viewer=LOCAL)) for r in rows], epsilon=0.3)
    stored = CorpusSummary.from_json(store.corpus("tiny", viewer=LOCAL)["summary"])
    assert stored.to_dict() == expected.to_dict() == report["summary"]
    assert report["summary"]["token_types"][0]["token"] == FIRST_TOKEN  # MiniLM's [CLS] sinks in every input
    assert report["summary"]["token_types"][0]["examples"] == ["[CLS]"]
    assert "token types that sink most often" in captured.err and "inputs with a detrimental sink" in captured.err

    assert main(["batch", str(corpus_file), "--model", "minilm", "--quiet"]) == 0
    assert "4 lines: 0 analysed, 4 served from the store" in capsys.readouterr().err
    assert calls == LINES[2:] and store.count(viewer=LOCAL) == 4


def test_batch_cli_errors_and_corpora_commands(corpus_file: Path, db_path: Path, minilm, capsys) -> None:
    assert main(["batch", str(corpus_file), "--model", "minilm", "--quiet", "--corpus", "mine"]) == 0
    capsys.readouterr()
    assert main(["batch", str(corpus_file), "--model", "minilm", "--quiet", "--corpus", "mine",
                 "--epsilon", "0.2"]) == 2
    assert capsys.readouterr().err.startswith("sinkfix: error: corpus 'mine' was built with model minilm")
    assert main(["batch", str(corpus_file.parent / "missing.txt"), "--model", "minilm"]) == 2
    assert "corpus file not found" in capsys.readouterr().err

    assert main(["corpora", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["n_runs"], c["model"]) for c in listed] == [("mine", 4, "minilm")]
    assert main(["corpora", "show", "mine"]) == 0
    shown = capsys.readouterr().out
    assert "corpus 'mine'" in shown and "sink rate per head" in shown and LINES[3] in shown
    assert main(["corpora", "delete", "mine"]) == 0
    assert main(["corpora", "show", "mine"]) == 2
    assert "no corpus named 'mine'" in capsys.readouterr().err
    assert Store(db_path).count(viewer=LOCAL) == 4  # the runs stay in the history


def test_a_changed_file_drops_lines_that_are_gone(tmp_path: Path, db_path: Path, minilm, capsys) -> None:
    path = tmp_path / "c.txt"
    path.write_text("A dog ran.\nBirds fly.\n")
    assert main(["batch", str(path), "--model", "minilm", "--quiet"]) == 0
    path.write_text("A dog ran.\n")
    assert main(["batch", str(path), "--model", "minilm", "--quiet"]) == 0
    assert "1 old lines dropped" in capsys.readouterr().err
    store = Store(db_path)
    corpus = store.corpus("c", viewer=LOCAL)
    assert [r["line_no"] for r in store.corpus_runs(corpus["id"], viewer=LOCAL)] == [1]
    assert CorpusSummary.from_json(corpus["summary"]).n_inputs == 1
