"""How the engine calls ray.init (no cluster is started here: ray.init is replaced)."""
from __future__ import annotations

import pytest

from sinkfix.engines.ray_engine import RayConnectionError, RayOptions, connect
from sinkfix.errors import SinkFixError


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    import ray

    seen: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.append(kwargs))
    return seen


def test_without_an_address_the_node_is_always_a_new_local_one(calls: list[dict],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # ignored: address="local" never reads it
    assert connect(RayOptions(workers=3)) is True
    assert calls[0]["address"] == "local" and calls[0]["num_cpus"] == 3
    assert "py_modules" not in calls[0]["runtime_env"]


def test_an_address_is_joined_as_given_with_the_package_shipped(calls: list[dict]) -> None:
    connect(RayOptions(address="auto"))
    assert calls[0]["address"] == "auto" and "num_cpus" not in calls[0]
    assert calls[0]["runtime_env"]["py_modules"][0].endswith("sinkfix")


def test_a_failed_join_is_one_plain_line_naming_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def refuse(**kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6379\nmore detail")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(RayConnectionError) as caught:
        connect(RayOptions(address="127.0.0.1:6379"))
    message = str(caught.value)
    assert isinstance(caught.value, SinkFixError) and "\n" not in message
    assert "'127.0.0.1:6379'" in message and "192.0.2.2:6379" in message and "RAY_AUTH_MODE=token" in message
