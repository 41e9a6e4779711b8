"""The API on random bodies (Hypothesis): never a 500, never a traceback, always one JSON line of detail.

The real MiniLM serves "minilm" (the session's model); random texts are short so a few hundred
cases take seconds. ``pytest --hypothesis-show-statistics`` prints how many cases ran.
"""
from __future__ import annotations

import json
from urllib.parse import quote
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sinkfix
from sinkfix import api, models

FIELDS = ["model_name", "model", "text", "layer", "tau_att", "tau_norm", "beta", "epsilon", "map_token_limit",
          "max_tokens", "include_maps"]
EXPECTED = {200, 400, 403, 404, 413, 422}  # 400: a SinkFix error with no better status (a bad `since`)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 300), st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.text(max_size=30),
    st.sampled_from(["minilm", "/etc", "smollm2", "The cat sat.", "", " ", "\ud800", "\x00"]),
)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                          max_size=3), max_leaves=8)
BODIES = st.one_of(
    JSON,
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5),
    # Mostly valid bodies, so the analysis path runs too: a short text and some settings.
    st.fixed_dictionaries({"text": st.text(min_size=1, max_size=40)},
                          optional={k: SCALARS for k in FIELDS if k not in ("text", "model")}),
    st.fixed_dictionaries({"text": st.text(min_size=1, max_size=40)}, optional={
        "model_name": st.sampled_from(["minilm", "/etc"]), "layer": st.integers(-1, 7), "tau_att": st.floats(0, 1),
        "beta": st.floats(-0.1, 1.1), "max_tokens": st.integers(0, 600), "map_token_limit": st.integers(0, 300),
        "include_maps": st.booleans()}),
)
PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture()
def client(db_path: Path, minilm: sinkfix.LoadedModel, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr(models.loading, "load_model", lambda name, progress=None, **_: minilm)
    api.reset()
    yield TestClient(api.app, raise_server_exceptions=False)
    api.reset()


def check(response, analysis: bool = True) -> None:
    event(f"status {response.status_code}")  # --hypothesis-show-statistics shows the mix
    assert response.status_code in EXPECTED, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == "application/json" and "Traceback" not in response.text
    body = response.json()
    if response.status_code != 200:
        assert isinstance(body["detail"], str) and "\n" not in body["detail"]
    elif analysis:
        assert len(body["token_list"]) == len(body["classifications"]) == len(body["att_received_scores"])


@PROPERTY
@given(body=BODIES, maps=st.booleans())
def test_random_json_bodies(client: TestClient, body: object, maps: bool) -> None:
    # allow_nan: Python's json writes NaN/Infinity, which the server must refuse cleanly too.
    raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    check(client.post(f"/api/analyze?maps={str(maps).lower()}", content=raw,
                      headers={"content-type": "application/json"}))


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_random_bytes(client: TestClient, raw: bytes, content_type: str) -> None:
    check(client.post("/api/analyze", content=raw, headers={"content-type": content_type} if content_type else {}))


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["limit", "offset", "model", "search", "label", "since", "maps"]),
                              st.text(max_size=12), max_size=4),
       run=st.text(max_size=8))
def test_random_queries(client: TestClient, params: dict, run: str) -> None:
    check(client.get("/api/runs", params=params), analysis=False)
    check(client.get(f"/api/runs/{quote(run, safe='') or 1}", params=params), analysis=False)
