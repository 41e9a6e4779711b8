"""The shared-server policy: model allowlist, body limit, token, maps on request, text cut, gzip, queue."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import sinkfix
from sinkfix import api, models
from sinkfix.api.config import CHARS_PER_TOKEN
from sinkfix.api.keylocks import KeyLocks
from sinkfix.api.shelf import BoundedShelf
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store
from tests.conftest import SEED_TEXT


@pytest.fixture()
def client(db_path: Path, minilm: sinkfix.LoadedModel, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The API with 'minilm' served by the session's model; any other load is recorded and refused."""
    loads: list[str] = []

    def loading(name: str, progress=None, **kwargs):
        loads.append(name)
        if name != "minilm":
            raise AssertionError(f"the server tried to load {name!r}")
        return minilm

    monkeypatch.setattr(models.loading, "load_model", loading)
    api.reset()
    with TestClient(api.app) as test_client:
        test_client.loads = loads  # type: ignore[attr-defined]
        yield test_client
    api.reset()


# ---------------------------------------------------------------- model policy


@pytest.mark.parametrize("name", ["/etc", "/root", "/nonexistent/dir", "..", "org/some-hub-model", "MiniLM",
                                  "cache/models/smollm2-135m"])
def test_model_outside_the_list_is_403_and_reveals_nothing(client: TestClient, name: str) -> None:
    response = client.post("/api/analyze", json={"model_name": name, "text": "hi"})
    assert response.status_code == 403
    # The same body whatever the name: nothing about whether it exists, is a folder, or holds a config.
    assert response.json() == {"detail": "this server serves only these models: minilm, smollm2-135m "
                                         "(its administrator sets them with SINKFIX_API_MODELS)"}
    assert client.loads == []  # type: ignore[attr-defined]


def test_allowlist_from_the_environment(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKFIX_API_MODELS", " minilm , /srv/models/bert ")
    refused = client.post("/api/analyze", json={"model_name": "smollm2-135m", "text": "hi"})
    assert refused.status_code == 403 and "minilm, /srv/models/bert" in refused.json()["detail"]
    assert client.post("/api/analyze", json={"model_name": "minilm", "text": "hi"}).status_code == 200
    assert client.get("/api/health").json()["models_allowed"] == ["minilm", "/srv/models/bert"]


def test_shelf_holds_at_most_max_models_evicting_the_least_recently_used(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    monkeypatch.setattr(models.loading, "load_model", lambda name, progress=None, **_: loads.append(name) or name.upper())
    shelf = BoundedShelf()
    assert shelf.get("a", 2) == "A" and shelf.get("b", 2) == "B"
    assert shelf.get("a", 2) == "A"  # a is now the most recently used
    shelf.get("c", 2)
    assert shelf.loaded() == ["a", "c"] and shelf.evicted == ["b"]
    shelf.get("b", 2)  # loaded again
    assert loads == ["a", "b", "c", "b"] and shelf.loaded() == ["c", "b"]
    shelf.get("b", 1)
    assert shelf.loaded() == ["b"]


# ---------------------------------------------------------------- limits


def test_five_megabyte_body_is_413_before_parsing(client: TestClient) -> None:
    body = json.dumps({"model_name": "minilm", "text": "word " * 1_000_000}).encode()
    assert len(body) > 5_000_000
    response = client.post("/api/analyze", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit of 1000000 bytes" in response.json()["detail"]
    assert client.loads == []  # type: ignore[attr-defined]


def test_chunked_body_is_counted_as_it_streams(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKFIX_MAX_BODY", "2000")
    sent: list[int] = []

    def chunks(n: int) -> Iterator[bytes]:  # no Content-Length: the body arrives in pieces
        yield b'{"model_name": "minilm", "text": "'
        for _ in range(n):
            sent.append(1)
            yield b"word " * 100
        yield b'"}'

    big = client.post("/api/analyze", content=chunks(50), headers={"content-type": "application/json"})
    assert big.status_code == 413 and "limit of 2000 bytes" in big.json()["detail"]
    small = client.post("/api/analyze", content=chunks(2), headers={"content-type": "application/json"})
    assert small.status_code == 200 and len(small.json()["token_list"]) == 202


def test_text_is_cut_to_the_character_budget_of_max_tokens(client: TestClient, minilm, db_path: Path) -> None:
    text = "The cat sat on the mat. " * 100  # 2400 characters
    body = client.post("/api/analyze", json={"text": text, "max_tokens": 16}).json()
    assert body["text_cut"] == {"kept_chars": 16 * CHARS_PER_TOKEN, "dropped_chars": 2400 - 16 * CHARS_PER_TOKEN}
    assert Store(db_path).get(body["run_id"], viewer=LOCAL).text == text[:16 * CHARS_PER_TOKEN]
    # The same tokens as analysing the whole text with the same limit (no HTTP, no cut).
    expected = sinkfix.analyze(text, minilm, sinkfix.AnalysisSettings(max_tokens=16))
    assert body["token_list"] == expected.tokens and len(body["token_list"]) == 16
    np.testing.assert_array_equal(np.float32(body["att_received_scores"]), expected.att_received)


def test_maps_only_when_asked_and_under_the_map_limit(client: TestClient, minilm) -> None:
    plain = client.post("/api/analyze", json={"text": SEED_TEXT})
    body = plain.json()
    assert body["corrected_att_scores"] is None and "note" not in body
    assert body["maps_url"] == f"/api/runs/{body['run_id']}?maps=true"
    fetched = client.get(body["maps_url"]).json()
    expected = sinkfix.analyze(SEED_TEXT, minilm)
    assert np.asarray(fetched["corrected_att_scores"]).shape == (6, 12, 15, 15)
    np.testing.assert_allclose(np.float32(fetched["corrected_att_scores"]), expected.corrected_maps, atol=2e-3)
    assert client.get(f"/api/runs/{body['run_id']}").json()["corrected_att_scores"] is None
    # Above the run's map limit there are no maps to give, even when asked: null, a note, no URL.
    small = client.post("/api/analyze", json={"text": SEED_TEXT, "map_token_limit": 8, "include_maps": True}).json()
    assert small["corrected_att_scores"] is None and small["maps_url"] is None and "map limit of 8" in small["note"]
    # A request may not raise the limit past the server's.
    over = client.post("/api/analyze", json={"text": "hi", "map_token_limit": 257})
    assert over.status_code == 422 and "at most 256 on this server" in over.json()["detail"]


def test_responses_are_gzip_compressed(client: TestClient) -> None:
    run_id = client.post("/api/analyze", json={"text": SEED_TEXT}).json()["run_id"]
    response = client.get(f"/api/runs/{run_id}?maps=true", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    # Content-Length is the compressed size; httpx hands over the decompressed body.
    assert int(response.headers["content-length"]) < len(response.content) / 2
    assert json.loads(response.content)["run_id"] == run_id
    small = client.get("/api/health", headers={"Accept-Encoding": "gzip"})  # under 1 kB: not worth it
    assert "content-encoding" not in small.headers


def test_invalid_unicode_text_is_422(client: TestClient) -> None:
    response = client.post("/api/analyze", content=b'{"text": "a \\ud800 b"}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422 and "lone surrogate" in response.json()["detail"]


# ---------------------------------------------------------------- token


@pytest.mark.parametrize("path", ["/api/health", "/api/runs", "/api/runs/1", "/api/corpora", "/docs", "/openapi.json",
                                  "/no/such/path"])
def test_with_a_token_every_endpoint_needs_it(client: TestClient, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setenv("SINKFIX_API_TOKEN", "s3cret-token")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"},
                    {"Authorization": "Basic s3cret-token"}, {"Authorization": "Bearer s3cret-tokenX"}):
        response = client.get(path, headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in response.json()["detail"]
    assert client.get(path, headers={"Authorization": "Bearer s3cret-token"}).status_code != 401


def test_token_is_checked_before_the_body(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKFIX_API_TOKEN", "t")
    assert client.post("/api/analyze", content=b"x" * 2_000_000).status_code == 401
    ok = client.post("/api/analyze", json={"text": "hi"}, headers={"Authorization": "Bearer t"})
    assert ok.status_code == 200


def test_without_a_token_only_this_machine_is_answered(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # `uvicorn sinkfix.api:app --host 0.0.0.0` with no token: a network client would be the owner `local`
    remote = TestClient(api.app, client=("10.1.2.3", 5000))
    refused = remote.get("/api/runs")
    assert refused.status_code == 403 and "SINKFIX_API_TOKEN" in refused.json()["detail"]
    assert TestClient(api.app, client=("::1", 5000)).get("/api/health").status_code == 200
    assert TestClient(api.app, client=("127.0.0.1", 5000)).get("/api/health").status_code == 200
    monkeypatch.setenv("SINKFIX_API_TOKEN", "s3cret-token")
    assert remote.get("/api/runs", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def test_serve_refuses_the_network_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SINKFIX_API_TOKEN", "SINKFIX_API_TOKENS")}
    done = subprocess.run([sys.executable, "-m", "sinkfix", "serve", "--host", "0.0.0.0", "--port", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "sinkfix: error: refusing to serve the API on 0.0.0.0 without a token: set SINKFIX_API_TOKEN or "
        "SINKFIX_API_TOKENS (docs/deployment.md); or listen on 127.0.0.1"]


# ---------------------------------------------------------------- queue and duplicates


def test_a_full_line_is_429_with_the_wait_as_retry_after_and_cache_hits_still_served(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKFIX_MAX_QUEUE", "1")
    stored = client.post("/api/analyze", json={"text": "A dog ran."}).json()
    line = api.LINES["minilm"]
    line.seconds_per_job = 40.0  # as if analyses had taken 40 s each
    running, waiting = line.join(1, 1), line.join(1, 1)  # other requests: one runs, one waits
    busy = client.post("/api/analyze", json={"text": "A new text."})
    # It would run after the running job and the waiting one: two jobs of 40 s, one at a time.
    assert busy.status_code == 429 and busy.headers["retry-after"] == "80"
    assert busy.json()["detail"] == ("the server is busy with minilm: 1 job(s) running and 1 waiting, its limit; "
                                     "try again in about 80 s")
    assert line.counts() == (1, 1)  # the refused request took no place
    hit = client.post("/api/analyze", json={"text": "A dog ran."})
    assert hit.status_code == 200 and hit.json()["cached"] and hit.json()["run_id"] == stored["run_id"]
    line.leave(running)
    line.leave(waiting)
    assert client.post("/api/analyze", json={"text": "A new text."}).status_code == 200
    assert line.counts() == (0, 0) and line.seconds_per_job < 40.0  # the analysis recorded its own duration


def test_a_request_waits_its_turn_in_line_first_come_first_served(client: TestClient,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Another request holds the model's one slot: this one waits in line (not refused), runs when it leaves."""
    monkeypatch.setenv("SINKFIX_MAX_QUEUE", "2")
    line = api.LINES["minilm"]
    holder = line.join(1, 2)
    answer: list = []
    sender = threading.Thread(target=lambda: answer.append(client.post("/api/analyze", json={"text": "Rain."})))
    sender.start()
    deadline = time.monotonic() + 60
    while line.counts() != (1, 1):  # the request is in line, behind the holder
        assert time.monotonic() < deadline and sender.is_alive()
        time.sleep(0.01)
    assert not answer
    line.leave(holder)
    sender.join(60)
    assert answer[0].status_code == 200 and not answer[0].json()["cached"]
    assert line.counts() == (0, 0)


def test_identical_concurrent_requests_make_one_run(client: TestClient, db_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKFIX_MAX_CONCURRENCY", "4")  # without the key lock, all four would analyse
    answers: list[dict] = []
    barrier = threading.Barrier(4)

    def send() -> None:
        barrier.wait()
        answers.append(client.post("/api/analyze", json={"text": "Birds fly south in winter."}).json())

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({a["run_id"] for a in answers}) == 1
    assert sorted(a["cached"] for a in answers) == [False, True, True, True]
    assert Store(db_path).count(viewer=LOCAL) == 1 and len(api.KEYS) == 0


def test_key_locks_serialise_one_key_only() -> None:
    locks, inside, order = KeyLocks(), threading.Event(), []
    with locks.hold("a"):
        other = threading.Thread(target=lambda: (locks.hold("b").__enter__(), order.append("b"), inside.set()))
        other.start()
        assert inside.wait(5)  # a different key is not blocked
        order.append("a")
    other.join()
    assert order == ["b", "a"]


# ---------------------------------------------------------------- the unknown-field answer


def test_an_unknown_field_is_answered_with_every_accepted_field(client: TestClient) -> None:
    from sinkfix.api.body import AnalyzeRequest, accepted_fields

    response = client.post("/api/analyze", json={"text": "hi", "colour": "blue"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("colour: unknown field (the fields are ")
    named = detail.removeprefix("colour: unknown field (the fields are ").removesuffix(")").split(", ")
    # Every field of the body model and the seed's alias "model", each once; the four the old list left out.
    assert sorted(named) == sorted([*AnalyzeRequest.model_fields, "model"])
    assert {"device", "dtype", "query_block", "bos"} <= set(named)

    class Wider(AnalyzeRequest):  # a field added to the body is named without another edit
        extra_setting: int = 0

    assert accepted_fields(Wider)[-1] == "extra_setting"


def test_the_body_offers_every_analysis_setting_with_the_same_default() -> None:
    """The body mirrors AnalysisSettings field by field (a strict pydantic schema for the HTTP contract);
    a setting added to one and not the other, or a default changed in one only, fails here."""
    import dataclasses

    from sinkfix.api.body import AnalyzeRequest
    from sinkfix.settings import AnalysisSettings

    body = AnalyzeRequest.model_fields
    for setting in dataclasses.fields(AnalysisSettings):
        assert setting.name in body, f"AnalyzeRequest lacks the setting {setting.name}"
        assert body[setting.name].default == setting.default, setting.name
