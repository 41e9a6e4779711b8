"""The HTTP endpoint: the seed contract, model reuse, the shared store, error bodies, and a real uvicorn."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import sinkfix
from sinkfix import api, models
from sinkfix.engines.local import CorpusLine, run_batch
from sinkfix.analysis.redistribute import redistribute, sink_mask
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store
from tests.conftest import SEED_TEXT

REPO = Path(__file__).resolve().parents[2]
SEED_FIELDS = ["token_list", "classifications", "att_received_scores", "value_norms", "corrected_att_scores"]


@pytest.fixture()
def load_calls(minilm: sinkfix.LoadedModel, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every load_model call the API makes; 'minilm' is served by the session's loaded model."""
    calls: list[str] = []
    real = models.load_model

    def counting(name: str, progress=None, **kwargs):
        calls.append(name)
        if name == "minilm" and kwargs.get("dtype", "float32") == "float32":
            return minilm
        return real(name, progress=progress, **kwargs)

    monkeypatch.setattr(models.loading, "load_model", counting)
    api.reset()
    yield calls
    api.reset()


@pytest.fixture()
def client(db_path: Path, load_calls: list[str]) -> TestClient:
    return TestClient(api.app)


def test_seed_request_returns_the_seed_fields_computed_like_analyze(client: TestClient, minilm, db_path) -> None:
    # The maps are sent only when asked for (?maps=true or "include_maps": true).
    response = client.post("/api/analyze?maps=true", json={"model_name": "minilm", "text": SEED_TEXT})
    assert response.status_code == 200
    body = response.json()
    assert list(body)[:5] == SEED_FIELDS and isinstance(body["run_id"], int) and body["cached"] is False
    expected = sinkfix.analyze(SEED_TEXT, minilm)  # independent: a direct analysis, no HTTP, no store
    assert body["token_list"] == expected.tokens and len(body["token_list"]) == 15
    assert body["classifications"] == expected.labels
    np.testing.assert_array_equal(np.float32(body["att_received_scores"]), expected.att_received)
    np.testing.assert_array_equal(np.float32(body["value_norms"]), expected.value_norm)
    corrected = np.asarray(body["corrected_att_scores"], dtype=np.float32)
    assert corrected.shape == (6, 12, 15, 15)
    np.testing.assert_array_equal(corrected, expected.corrected_maps)
    # Saved to the same database as the CLI and the dashboard (SINKFIX_DB).
    stored = Store(db_path).get(body["run_id"], viewer=LOCAL)
    assert stored.text == SEED_TEXT and stored.tokens == expected.tokens


def test_model_is_loaded_once_and_identical_requests_come_from_the_store(client: TestClient, load_calls,
                                                                          db_path) -> None:
    first = client.post("/api/analyze", json={"model_name": "minilm", "text": "The cat sat on the mat."}).json()
    second = client.post("/api/analyze", json={"model_name": "minilm", "text": "A dog ran."}).json()
    again = client.post("/api/analyze", json={"model_name": "minilm", "text": "A dog ran."}).json()
    assert load_calls == ["minilm"]
    assert api.MODELS.loaded() == ["minilm"]
    assert first["run_id"] != second["run_id"] and not second["cached"]
    assert again["cached"] and again["run_id"] == second["run_id"]
    assert {k: again[k] for k in SEED_FIELDS[:4]} == {k: second[k] for k in SEED_FIELDS[:4]}
    assert Store(db_path).count(viewer=LOCAL) == 2


def test_settings_are_applied_and_stored(client: TestClient, minilm) -> None:
    text = "The cat sat on the mat."
    settings = sinkfix.AnalysisSettings(layer=4, tau_att=0.05, tau_norm=0.85, beta=0.2, epsilon=0.25)
    body = client.post("/api/analyze", json={"model": "minilm", "text": text, "layer": 4, "tau_att": 0.05,
                                             "tau_norm": 0.85, "beta": 0.2, "epsilon": 0.25,
                                             "include_maps": True}).json()
    expected = sinkfix.analyze(text, minilm, settings)
    assert body["classifications"] == expected.labels
    # Layer 4's value norms make two tokens detrimental; the default layer (3) makes one.
    assert expected.labels.count("detrimental") == 2
    default_layer = sinkfix.analyze(text, minilm, sinkfix.AnalysisSettings(tau_att=0.05, tau_norm=0.85))
    assert default_layer.labels != expected.labels
    np.testing.assert_array_equal(np.float32(body["corrected_att_scores"]), expected.corrected_maps)
    run = client.get(f"/api/runs/{body['run_id']}", params={"maps": "true"}).json()
    assert run["metadata"]["settings"] == settings.to_dict()
    assert run["metadata"]["model"] == "minilm" and run["metadata"]["text"] == text
    assert run["token_list"] == expected.tokens and run["run_id"] == body["run_id"]
    np.testing.assert_array_equal(np.float32(run["att_received_scores"]), expected.att_received)
    # The store keeps maps as float16, and the corrected maps are ACT applied to those.
    maps16 = torch.from_numpy(expected.maps.astype(np.float16).astype(np.float32))
    corrected16 = redistribute(maps16, sink_mask(expected.sink_indices, expected.n_tokens), 0.2).numpy()
    np.testing.assert_allclose(np.float32(run["corrected_att_scores"]), corrected16, atol=1e-6)


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"model_name": "minilm"}, 422, "text: Field required"),
    ({}, 422, "text: Field required"),
    ({"model_name": "minilm", "text": ""}, 422, "the text is empty"),
    ({"model_name": "minilm", "text": "   \n"}, 422, "the text is empty"),
    ({"model_name": "minilm", "text": 42}, 422, "text: Input should be a valid string"),
    ({"model_name": 7, "text": "hi"}, 422, "model_name: Input should be a valid string"),
    ({"text": "hi", "tau_att": "0.3"}, 422, "tau_att: Input should be a valid number"),
    ({"text": "hi", "layer": 1.5}, 422, "layer: Input should be a valid integer"),
    ({"text": "hi", "tau_att": 1.5}, 422, "tau_att must be a number between 0 and 1"),
    ({"text": "hi", "beta": -0.1}, 422, "beta must be a number between 0 and 1"),
    ({"text": "hi", "layer": 6}, 422, "layer 6 is out of range: this model has layers 0..5"),
    ({"text": "hi", "tau": 0.2}, 422, "tau: unknown field"),
    (["hi"], 422, "valid dictionary"),
    # Not on the server's list (default: the embedded models): 403 naming the list (tests/integration/test_api_policy.py).
    ({"model_name": "no-such-model-xyz", "text": "hi"}, 403, "minilm, smollm2-135m"),
    ({"model_name": "google-bert/bert-base-uncased", "text": SEED_TEXT}, 403, "minilm, smollm2-135m"),
])
def test_bad_bodies_are_json_4xx_without_a_traceback(client: TestClient, body, status: int, message: str) -> None:
    response = client.post("/api/analyze", json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["detail"] and "Traceback" not in response.text


def test_listed_model_that_is_not_here_is_404(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's own example, allowed by the administrator: works when bert-base-uncased is in the local
    HF cache; here it is not."""
    monkeypatch.setenv("SINKFIX_API_MODELS", "minilm,google-bert/bert-base-uncased")
    response = client.post("/api/analyze", json={"model_name": "google-bert/bert-base-uncased", "text": SEED_TEXT})
    assert response.status_code == 404 and "models that work offline: minilm" in response.json()["detail"]


def test_body_that_is_not_json(client: TestClient) -> None:
    response = client.post("/api/analyze", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"] == "the body is not valid JSON"


def test_runs_history_paged_filtered_and_404(client: TestClient) -> None:
    texts = ["The cat sat on the mat.", "A dog ran.", "Birds fly south."]
    ids = [client.post("/api/analyze", json={"text": t}).json()["run_id"] for t in texts]
    page = client.get("/api/runs", params={"limit": 2}).json()
    assert page["total"] == 3 and [r["id"] for r in page["runs"]] == ids[::-1][:2]
    rest = client.get("/api/runs", params={"limit": 2, "offset": 2}).json()
    assert [r["id"] for r in rest["runs"]] == [ids[0]]
    found = client.get("/api/runs", params={"search": "dog", "model": "minilm"}).json()
    assert [r["id"] for r in found["runs"]] == [ids[1]] and found["runs"][0]["text"] == "A dog ran."
    assert client.get("/api/runs", params={"model": "other"}).json()["total"] == 0
    missing = client.get("/api/runs/999")
    assert missing.status_code == 404 and missing.json() == {"detail": missing.json()["detail"]}
    assert "no run with id 999" in missing.json()["detail"]
    assert client.get("/api/runs/abc").status_code == 422
    assert client.get("/api/runs", params={"label": "bad"}).status_code == 422
    assert client.get("/api/runs", params={"limit": 0}).status_code == 422
    assert client.get("/api/runs", params={"since": "yesterday"}).status_code == 400


def test_corpus_endpoints(client: TestClient, minilm, db_path) -> None:
    store = Store(db_path)
    result = run_batch([CorpusLine(1, "A dog ran."), CorpusLine(2, "The cat sat.")], minilm, None, store, "pets",
                       progress=False, viewer=LOCAL)
    listed = client.get("/api/corpora").json()["corpora"]
    assert [(c["name"], c["n_runs"]) for c in listed] == [("pets", 2)]
    body = client.get("/api/corpora/pets").json()
    assert body["complete"] and [r["line_no"] for r in body["runs"]] == [1, 2]
    assert body["summary"] == result.summary.to_dict()
    assert client.get("/api/corpora/nope").status_code == 404


def test_unusable_database_is_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_calls) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 100)
    monkeypatch.setenv("SINKFIX_DB", str(bad))
    response = TestClient(api.app).get("/api/runs")
    assert response.json() == {"detail": "the server's database file is not a SQLite database; SinkFix left it "
                                         "untouched"}
    assert response.status_code == 503 and str(tmp_path) not in response.text  # the path stays on the server


# ---------------------------------------------------------------- a real server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_real_uvicorn_process(tmp_path: Path) -> None:
    """The README's command, on a free port: the model loads on the first request and is reused."""
    port = _free_port()
    env = {**os.environ, "SINKFIX_DB": str(tmp_path / "served.db"), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "sinkfix.api:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as http:
            deadline = time.monotonic() + 120
            while True:
                assert server.poll() is None, server.stdout.read()
                try:
                    if http.get("/api/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "uvicorn did not start within 120 s"
                time.sleep(0.3)
            timings = []
            for text in ("The cat sat on the mat.", "A dog ran.", "A dog ran."):
                started = time.perf_counter()
                response = http.post("/api/analyze", json={"model_name": "minilm", "text": text})
                timings.append(time.perf_counter() - started)
                assert response.status_code == 200
            body = response.json()
            assert body["cached"] and body["token_list"] == ["[CLS]", "a", "dog", "ran", ".", "[SEP]"]
            assert http.get("/api/health").json()["models_loaded"] == ["minilm"]
            assert http.get("/api/runs").json()["total"] == 2
            bad = http.post("/api/analyze", json={"model_name": "minilm", "text": ""})
            assert bad.status_code == 422 and bad.json() == {"detail": bad.json()["detail"]}
            print(f"\nuvicorn request times: first {timings[0]:.3f} s (loads minilm), "
                  f"second {timings[1]:.3f} s (new text), repeat {timings[2]:.3f} s (from the store)")
        assert Store(tmp_path / "served.db").count(viewer=LOCAL) == 2
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_device_and_dtype_in_the_body_load_that_variant_and_are_stored(db_path: Path) -> None:
    """Issue 11: the API body takes device and dtype like the CLI; bfloat16 stays within 2e-2 of float32."""
    client = TestClient(api.app)
    text = "The quick brown fox jumps over the lazy dog."
    plain = client.post("/api/analyze", json={"model_name": "minilm", "text": text})
    half = client.post("/api/analyze", json={"model_name": "minilm", "text": text, "dtype": "bfloat16",
                                             "device": "cpu"})
    assert plain.status_code == 200 and half.status_code == 200, half.text
    a, b = np.array(plain.json()["att_received_scores"]), np.array(half.json()["att_received_scores"])
    assert np.abs(a - b).max() < 2e-2 and half.json()["run_id"] != plain.json()["run_id"]
    assert Store(db_path).get(half.json()["run_id"], viewer=LOCAL).dtype == "bfloat16"
    missing = client.post("/api/analyze", json={"model_name": "minilm", "text": text, "device": "cuda:7"})
    assert missing.status_code in (400, 422) and "cuda" in missing.json()["detail"].lower()
