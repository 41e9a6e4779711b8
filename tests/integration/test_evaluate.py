"""Evaluation on the embedded models: NLL against an independent reimplementation, the controls,
the seed rule on a batch, chunking with a bootstrap CI, calibration and the CLI."""
import json

import pytest
import torch

import sinkfix
from sinkfix.experiments import calibrate
from sinkfix import cli
from sinkfix.analysis.pipeline import analyze
from sinkfix.experiments.evaluate import ChunkRun, chunk_text, evaluate, forward, sweep
from sinkfix.experiments.token_evidence import token_evidence
from sinkfix.experiments.intervene import Intervention, make_plan
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from ..shared_data import data_dir
from ..unit.test_intervene import reference_nll

pytestmark = pytest.mark.slow

DATA = data_dir()
HAMLET = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the slings and arrows"


@pytest.mark.parametrize("beta", [0.4, 0.0])
def test_smollm2_token_zero_nll_matches_an_independent_reimplementation(smollm2, beta, monkeypatch):
    result = evaluate(smollm2, HAMLET, Intervention(target="first", beta=beta))
    ids = list(chunk_text(smollm2, [HAMLET])[0].ids)
    assert result.intervened_nll == pytest.approx(reference_nll(smollm2, ids, beta, monkeypatch), abs=1e-3)
    assert result.baseline_nll == pytest.approx(reference_nll(smollm2, ids, 1.0, monkeypatch), abs=1e-3)
    assert abs(result.delta_nll) > 0.05  # a real model's sink matters: the check is not vacuous


def test_beta_one_is_identity_on_both_embedded_models(smollm2, minilm):
    for loaded in (smollm2, minilm):
        result = evaluate(loaded, HAMLET, Intervention(target="first", beta=1.0))
        assert result.cosine_mean == 1.0
        if loaded.lm_kind:
            assert result.delta_nll == 0.0 and result.kl_mean == 0.0 and result.top1_agreement == 1.0


def test_minilm_has_no_nll_and_still_reports_drift(minilm):
    result = evaluate(minilm, "Attention sinks soak up attention.", Intervention(target="first", beta=0.0)).to_json()
    assert result["baseline_nll"] is None and result["kl_mean"] is None and result["top1_agreement"] is None
    assert 0 < result["cosine_mean"] < 0.99 and result["target_token_text"] == [["[CLS]"]]


def test_detrimental_on_a_batch_equals_analyze(smollm2):
    # Loose thresholds so the seed rule finds something; the batch path must agree with analyze().
    text = open(DATA / "tinyshakespeare.txt").read()[:1200] if (DATA / "tinyshakespeare.txt").exists() else HAMLET * 6
    loose = dict(tau_att=0.02, tau_norm=0.95)
    analysis = analyze(text, smollm2, sinkfix.AnalysisSettings(**loose))
    run = ChunkRun(smollm2, chunk_text(smollm2, [text], 4096)[0])
    plan = run.plan(Intervention(target="detrimental", **loose))
    assert analysis.sink_indices and plan.target_tokens() == [analysis.sink_indices]


def test_random_control_carries_matched_mass_on_a_real_model(smollm2):
    run = ChunkRun(smollm2, chunk_text(smollm2, [HAMLET * 3])[0])
    plan = run.plan(Intervention(target="random", match="first"))
    chosen = plan.target_tokens()[0]
    assert chosen and 0 not in chosen
    # Token 0 takes a large share; many ordinary tokens together carry about the same.
    assert float(plan.achieved_mass[0]) == pytest.approx(float(plan.target_mass[0]), rel=0.05)
    assert run.score(plan).cosine.mean() < 1.0


def test_padded_batch_equals_one_at_a_time(smollm2):
    texts = [HAMLET, "To be, or not"]
    enc = smollm2.tokenizer(texts, padding=True, padding_side="right", return_tensors="pt")
    mask = enc["attention_mask"]
    intervention = Intervention(target="first", beta=0.0)
    plan = make_plan(intervention, None, mask.bool(), smollm2.n_layers, smollm2.n_heads)
    batched = forward(smollm2, enc["input_ids"], mask, plan=plan).logits
    for row, text in enumerate(texts):
        ids = torch.tensor([smollm2.tokenizer(text)["input_ids"]])
        single_plan = make_plan(intervention, None, torch.ones_like(ids).bool(), smollm2.n_layers, smollm2.n_heads)
        single = forward(smollm2, ids, torch.ones_like(ids), plan=single_plan).logits[0]
        torch.testing.assert_close(batched[row, : ids.shape[1]], single, atol=2e-4, rtol=1e-4)


def test_chunks_bootstrap_sweep_and_evidence(smollm2):
    text = HAMLET * 3
    result = evaluate(smollm2, text, Intervention(target="first", beta=0.0), max_tokens=24)
    assert result.n_chunks >= 3 and result.ci_unit == "chunk"
    low, high = result.delta_nll_ci
    assert low <= result.delta_nll <= high
    assert all(len(t) == 1 for t in result.target_tokens)  # token 0 of every chunk
    points = sweep(smollm2, HAMLET, Intervention(target="first"), betas=(1.0, 0.0))
    assert {(p.arm, p.beta) for p in points} == {(a, b) for a in ("target", "random") for b in (1.0, 0.0)}
    assert all(p.evaluation.delta_nll == 0.0 for p in points if p.beta == 1.0)
    rows = token_evidence(smollm2, HAMLET, Intervention(beta=0.0), top_k=3)
    assert rows[0].index == 0 and rows[0].evidence_label == "beneficial"
    for row in rows[1:]:
        expected = "detrimental" if row.delta_nll < 0 else "beneficial" if row.delta_nll > 0 else "neutral"
        assert row.evidence_label == expected


def test_calibrate_nll_keeps_heads_and_checks_controls(smollm2, db_path):
    result = calibrate.calibrate_nll(smollm2, [HAMLET], ["Whether 'tis nobler in the mind to suffer, or to take arms"],
                                     Intervention(target="first", beta=0.0), max_heads=3)
    assert len(result.trials) == 3 and result.notes
    kept = {(t.layer, t.head) for t in result.trials if t.gain > 0}
    assert set(result.kept_heads) == kept
    if kept:
        assert set(result.heldout) == {"target", "random"}  # first is the target itself
    calibrate.save(result, "tiny-search", viewer=LOCAL)
    assert calibrate.load("tiny-search", viewer=LOCAL)["kept_heads"] == [list(h) for h in result.kept_heads]


def test_cli_evaluate_json_and_stored_heads(smollm2, db_path, capsys):
    code = cli.main(["evaluate", "--text", HAMLET, "--model", "smollm2-135m", "--target", "first", "--beta", "0",
                     "--layers", "0-3", "--json", "-"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in ("baseline_nll", "intervened_nll", "kl_mean", "top1_agreement", "cosine_mean", "n_positions",
                "target_tokens", "beta", "delta_nll_ci95"):
        assert key in out
    assert out["layers"] == [0, 1, 2, 3] and out["target_tokens"] == [[0]]
    stored = Store(db_path).evaluations(model="smollm2-135m", viewer=LOCAL)
    assert len(stored) == 1 and stored[0]["delta"] == out["delta_nll"] and stored[0]["result"] == out

    fake = calibrate.Calibration("smollm2-135m", "nll", "nll", Intervention(), ((2, 1), (5, 3)), [], 0.0, 0, 0)
    calibrate.save(fake, "two-heads", viewer=LOCAL)
    assert cli.main(["evaluate", "--text", HAMLET, "--model", "smollm2-135m", "--target", "first",
                     "--heads", "@two-heads", "--no-save", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["heads"] == [[2, 1], [5, 3]]
    assert cli.main(["evaluate", "--text", HAMLET, "--model", "smollm2-135m", "--heads", "@missing"]) == 2
    assert "no stored calibration named 'missing'" in capsys.readouterr().err


def test_cli_rejects_token_zero_by_index(capsys):
    assert cli.main(["evaluate", "--text", "hello", "--target", "tokens:0,2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sinkfix: error: token 0 is protected") and len(err.strip().splitlines()) == 1
