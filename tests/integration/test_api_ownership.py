"""The HTTP API answers each token as its owner (issue 32, item 1): two named tokens never read each other's
private runs or corpora by any route, a cache hit never hands over another token's row, shared rows are read
by both, and an administrator's token reads everything. Target: 0 reads of another token's private row."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import sinkfix
from sinkfix import api, models
from sinkfix.policy.ownership import Viewer
from sinkfix.store import Store

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789", "root": "root-token-0123456789"}
TEXTS = {"alice": "Alice's unpublished prompt about herons.", "bob": "Bob's private data-set row about otters."}


@pytest.fixture()
def client(db_path: Path, minilm: sinkfix.LoadedModel, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("SINKFIX_API_TOKENS", ",".join(f"{name}={token}" for name, token in TOKENS.items()))
    monkeypatch.setenv("SINKFIX_ADMINS", "root")
    monkeypatch.setattr(models.loading, "load_model", lambda name, progress=None, **kw: minilm)
    api.reset()
    yield TestClient(api.app)
    api.reset()


def _as(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


@pytest.fixture()
def seeded(client: TestClient, db_path: Path, minilm: sinkfix.LoadedModel) -> dict[str, dict]:
    """Each token analyses its own text through the API, and owns a corpus named after its text."""
    rows = {}
    store = Store(db_path)
    for name, text in TEXTS.items():
        body = client.post("/api/analyze", headers=_as(name), json={"model_name": "minilm", "text": text}).json()
        viewer = Viewer(name)
        settings = sinkfix.AnalysisSettings().resolved(minilm.n_layers).to_dict()
        corpus_id = store.open_corpus(f"{name}-corpus", "minilm", settings, "lines.txt", viewer=viewer)
        store.save_corpus_runs(corpus_id, [(1, sinkfix.analyze(f"{text} (line 1)", minilm), "line-key")])
        rows[name] = {"run": body["run_id"], "text": text, "corpus": f"{name}-corpus"}
    return rows


def _leaks(client: TestClient, name: str, other: dict) -> dict[str, int]:
    """Every API route that reads stored rows, as ``name``: how often ``other``'s private text or run comes back."""
    headers = _as(name)
    missing = client.get("/api/runs/999999", headers=headers).json()["detail"].replace("999999", "{}")
    answers = {
        "list": client.get("/api/runs?limit=500", headers=headers),
        "search": client.get("/api/runs", params={"search": other["text"][:12]}, headers=headers),
        "filters": client.get("/api/runs", params={"model": "minilm", "since": "2000-01-01"}, headers=headers),
        "run": client.get(f"/api/runs/{other['run']}", headers=headers),
        "run with maps": client.get(f"/api/runs/{other['run']}?maps=true", headers=headers),
        "corpora": client.get("/api/corpora", headers=headers),
        "corpus": client.get(f"/api/corpora/{other['corpus']}", headers=headers),
        "analyze (cache)": client.post("/api/analyze", headers=headers, json={"model_name": "minilm",
                                                                               "text": other["text"]}),
    }
    leaks = {}
    for route, response in answers.items():
        body = response.json()
        listed = [row["id"] for row in body.get("runs", []) if isinstance(row, dict) and "id" in row]
        leaked = json.dumps(body).count(other["text"]) * (route != "analyze (cache)")  # that one sent the text
        leaked += listed.count(other["run"]) + (body.get("run_id") == other["run"])
        leaked += json.dumps(body).count(other["corpus"]) * (route != "corpus")  # that one asked by name
        if route in ("run", "run with maps"):
            leaked += response.status_code != 404 or body["detail"] != missing.format(other["run"])
        if route == "corpus":
            leaked += response.status_code != 404
        if route == "analyze (cache)":
            leaked += body["cached"] is not False  # a hit would be another token's computation
        leaks[route] = int(leaked)
    return leaks


def test_two_tokens_never_read_each_others_private_rows(client: TestClient, seeded: dict[str, dict]) -> None:
    routes = 0
    for name, other in (("alice", seeded["bob"]), ("bob", seeded["alice"])):
        leaks = _leaks(client, name, other)
        routes += len(leaks)
        assert leaks == dict.fromkeys(leaks, 0), (name, leaks)
    assert routes == 16
    # Each token's own rows come back on the same routes, with their owner named.
    for name, own in seeded.items():
        listed = client.get("/api/runs", headers=_as(name)).json()["runs"]
        assert own["run"] in [r["id"] for r in listed] and {r["owner"] for r in listed} == {name}
        assert client.get(f"/api/runs/{own['run']}", headers=_as(name)).json()["metadata"]["owner"] == name
        assert client.get(f"/api/corpora/{own['corpus']}", headers=_as(name)).json()["owner"] == name


def test_a_shared_run_is_read_by_the_other_token_and_cache_hits_copy_it(client: TestClient, db_path: Path,
                                                                        seeded: dict[str, dict]) -> None:
    alice = seeded["alice"]
    store = Store(db_path)
    store.set_shared("run", alice["run"], True, viewer=Viewer("alice"))
    store.set_shared("corpus", alice["corpus"], True, viewer=Viewer("alice"))
    run = client.get(f"/api/runs/{alice['run']}", headers=_as("bob")).json()
    assert run["metadata"]["text"] == alice["text"] and run["metadata"] == {**run["metadata"], "owner": "alice",
                                                                            "shared": True}
    assert client.get(f"/api/corpora/{alice['corpus']}", headers=_as("bob")).status_code == 200
    hit = client.post("/api/analyze", headers=_as("bob"), json={"model_name": "minilm", "text": alice["text"]}).json()
    assert hit["cached"] is True and hit["run_id"] != alice["run"]  # bob's own copy, no forward pass
    mine = client.get(f"/api/runs/{hit['run_id']}", headers=_as("bob")).json()
    assert mine["metadata"]["owner"] == "bob" and mine["att_received_scores"] == run["att_received_scores"]
    store.set_shared("run", alice["run"], False, viewer=Viewer("alice"))
    assert client.get(f"/api/runs/{alice['run']}", headers=_as("bob")).status_code == 404
    assert client.get(f"/api/runs/{hit['run_id']}", headers=_as("bob")).status_code == 200  # his copy stays his


def test_the_administrators_token_reads_everything_and_wrong_tokens_get_401(client: TestClient,
                                                                            seeded: dict[str, dict]) -> None:
    listed = client.get("/api/runs", headers=_as("root")).json()["runs"]
    assert {seeded["alice"]["run"], seeded["bob"]["run"]} <= {r["id"] for r in listed}
    assert {c["name"] for c in client.get("/api/corpora", headers=_as("root")).json()["corpora"]} == {
        "alice-corpus", "bob-corpus"}
    for headers in ({}, {"Authorization": "Bearer alice-token-012345678X"}, {"Authorization": TOKENS["alice"]}):
        assert client.get("/api/runs", headers=headers).status_code == 401


def test_the_single_unnamed_token_is_lab_and_no_token_is_local(db_path: Path, minilm, monkeypatch) -> None:
    monkeypatch.setattr(models.loading, "load_model", lambda name, progress=None, **kw: minilm)
    api.reset()
    client = TestClient(api.app)
    body = client.post("/api/analyze", json={"model_name": "minilm", "text": "A local text."}).json()
    assert client.get(f"/api/runs/{body['run_id']}").json()["metadata"]["owner"] == "local"
    monkeypatch.setenv("SINKFIX_API_TOKEN", "the-lab-token-0123")
    headers = {"Authorization": "Bearer the-lab-token-0123"}
    assert client.get("/api/runs", headers=headers).json()["total"] == 0  # local's run is not lab's
    body = client.post("/api/analyze", headers=headers, json={"model_name": "minilm", "text": "A lab text."}).json()
    assert client.get(f"/api/runs/{body['run_id']}", headers=headers).json()["metadata"]["owner"] == "lab"
    api.reset()
