"""STS Benchmark: the published MiniLM score, the file format, padded-batch interventions, the CLI."""
import json

import numpy as np
import pytest

from sinkfix.experiments import calibrate
from sinkfix import cli
from sinkfix.errors import InputError
from sinkfix.experiments.intervene import Intervention
from sinkfix.experiments.sts import PairSet, SentenceSet, bootstrap_difference, load_sts, spearman, sts

from ..shared_data import data_path, needs_data

STS = data_path("stsbenchmark")
needs_sts = needs_data("stsbenchmark/sts-test.csv")


def test_reads_tabs_only_with_quotes_and_extra_columns(tmp_path):
    path = tmp_path / "sts-test.csv"
    path.write_text(
        'main-news\tMSRpar\t2012\t0001\t4.2\tHe said "yes.\tShe said "no".\textra\tcolumns\n'
        "main-forums\tdeft\t2014\t0002\t0.5\tA cat.\tA dog.\n"
    )
    data = load_sts(tmp_path)
    assert data.first == ['He said "yes.', "A cat."] and data.second == ['She said "no".', "A dog."]
    assert data.scores.tolist() == [4.2, 0.5]
    (tmp_path / "bad.csv").write_text("only\tthree\tcolumns\n")
    with pytest.raises(InputError, match="line 1"):
        load_sts(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="not found"):
        load_sts(tmp_path / "nowhere.csv")


def test_bootstrap_difference_is_zero_for_identical_and_brackets_a_real_change():
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 300)
    good = gold + rng.normal(0, 1, 300)
    worse = gold + rng.normal(0, 3, 300)
    assert bootstrap_difference(good, good, gold) == (0.0, 0.0)
    low, high = bootstrap_difference(good, worse, gold)
    assert low <= spearman(worse, gold) - spearman(good, gold) <= high < 0


@pytest.mark.slow
@needs_sts
def test_minilm_reproduces_its_published_sts_b_test_score(minilm):
    result = sts(minilm, load_sts(STS, "test"))
    assert result.n_pairs == 1379
    assert result.baseline_spearman == pytest.approx(0.8203, abs=0.001)


@pytest.mark.slow
def test_padded_batch_intervention_equals_one_sentence_at_a_time(minilm):
    sentences = ["A man is playing a harp.", "Three dogs run across a snowy field near the old barn.", "Hi."]
    intervention = Intervention(target="tokens:2", beta=0.0)
    batched, _ = SentenceSet(minilm, sentences).embed(intervention)
    for index, sentence in enumerate(sentences):
        single, _ = SentenceSet(minilm, [sentence]).embed(intervention)
        np.testing.assert_allclose(batched[index], single[0], atol=1e-5)
    baseline = SentenceSet(minilm, sentences).baseline
    assert not np.allclose(baseline[0], batched[0], atol=1e-3)


@pytest.mark.slow
@needs_sts
@needs_data("stsbenchmark/sts-dev.csv")
def test_intervention_scores_with_ci_and_calibration(minilm, db_path):
    test = load_sts(STS, "test", limit=40)
    pairs = PairSet(minilm, test)
    result = pairs.score(Intervention(target="first", beta=0.0)).to_json()
    assert result["sentences_with_targets"] == 80 and result["n_pairs"] == 40
    assert result["delta_ci95"][0] <= result["delta_spearman"] <= result["delta_ci95"][1]
    empty = pairs.score(Intervention(target="detrimental"))  # the seed rule finds nothing in MiniLM here
    assert empty.sentences_with_targets == 0 and empty.delta == 0.0

    dev = load_sts(STS, "dev", limit=30)
    cal = calibrate.calibrate_sts(minilm, dev, pairs, Intervention(target="first", beta=0.4), max_heads=2)
    assert len(cal.trials) == 2 and cal.dev_size == 30 and cal.heldout_size == 40
    assert set(cal.kept_heads) == {(t.layer, t.head) for t in cal.trials if t.dev_metric > cal.dev_baseline}
    dev_pairs = PairSet(minilm, dev)
    for trial in cal.trials:  # each trial really is the dev Spearman with that one head edited
        single = Intervention(target="first", beta=0.4, heads=((trial.layer, trial.head),))
        assert trial.dev_metric == pytest.approx(spearman(dev_pairs.cosine(single)[0], dev.scores), abs=1e-9)


@pytest.mark.slow
@needs_sts
def test_cli_sts_json(capsys, db_path):
    code = cli.main(["sts", "--model", "minilm", "--data", str(STS), "--limit", "30", "--target", "first",
                     "--beta", "0.4", "--heads", "0:1,5:3", "--json", "-"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["n_pairs"] == 30 and out["heads"] == [[0, 1], [5, 3]]
    assert -1 <= out["baseline_spearman"] <= 1 and -1 <= out["intervened_spearman"] <= 1
    low, high = out["delta_ci95"]
    assert low <= out["delta_spearman"] <= high
    assert cli.main(["sts", "--model", "minilm", "--data", "/nonexistent/sts"]) == 2
    assert "STS-B file not found" in capsys.readouterr().err
