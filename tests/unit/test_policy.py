"""The shared policy (sinkfix.policy): data-folder files, the model list, the line, sign-in settings."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from sinkfix.errors import InputError
from sinkfix.policy import Line, LineFullError, ModelNotAllowedError, ServerConfig, check_model, files, signin
from sinkfix.policy.files import REFUSAL, FileNotAllowedError

SECRET = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"


@pytest.fixture()
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A data folder with a text, a second listed folder, and a planted secret outside both."""
    data, more, outside = tmp_path / "data", tmp_path / "more", tmp_path / "outside"
    for folder in (data, more, outside):
        folder.mkdir()
    (data / "story.txt").write_text("Once upon a time.\n")
    (data / "sub").mkdir()
    (data / "sub" / "deep.txt").write_text("deep\n")
    (more / "extra.txt").write_text("extra\n")
    (outside / "secret.txt").write_text(SECRET)
    (data / "leak.txt").symlink_to(outside / "secret.txt")  # a symlink in a data folder that leads out
    monkeypatch.setenv("SINKFIX_DATA", str(data))
    monkeypatch.setenv("SINKFIX_DATA_DIRS", os.pathsep.join([str(more), ""]))
    return {"data": data, "more": more, "outside": outside}


def test_data_folders_are_sinkfix_data_then_the_listed_ones(layout: dict[str, Path]) -> None:
    assert files.data_folders() == (layout["data"].resolve(), layout["more"].resolve())


def test_the_default_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sinkfix import paths

    monkeypatch.delenv("SINKFIX_DATA", raising=False)
    monkeypatch.delenv("SINKFIX_DATA_DIRS", raising=False)
    assert files.data_folders() == ((paths.REPO_ROOT.parent / "shared" / "data").resolve(),)  # beside the checkout
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "site-packages")  # installed: no checkout around it
    monkeypatch.setenv("SINKFIX_CACHE", str(tmp_path / "cache"))
    assert files.data_folders() == ((tmp_path / "cache" / "data").resolve(),)


@pytest.mark.parametrize("name, folder, real", [("story.txt", "data", "story.txt"),
                                                ("sub/deep.txt", "data", "sub/deep.txt"),
                                                ("sub/../story.txt", "data", "story.txt"),
                                                ("extra.txt", "more", "extra.txt")])
def test_files_in_the_data_folders_are_read(layout: dict[str, Path], name: str, folder: str, real: str) -> None:
    read = files.read_text(name, 1000)
    assert read.text == (layout[folder] / real).read_text()
    assert read.name == real and not read.cut  # the page's name, not the server's path


def test_an_absolute_path_inside_a_data_folder_is_read(layout: dict[str, Path]) -> None:
    assert files.read_text(str(layout["data"] / "story.txt"), 1000).name == "story.txt"


def test_missing_and_forbidden_paths_get_the_same_one_line(layout: dict[str, Path]) -> None:
    outside = layout["outside"]
    refused = [
        str(outside / "secret.txt"),  # a planted file outside the data folders
        str(outside / "missing.txt"),  # a missing one outside
        "missing.txt",  # a missing one inside
        "../outside/secret.txt",  # '..' out of a data folder
        "sub/../../outside/secret.txt",
        "leak.txt",  # a symlink that leads out
        "sub",  # a folder
        "/etc/passwd",
        "/dev/zero",
        "",
        "story.txt\x00",
    ]
    messages = set()
    for name in refused:
        with pytest.raises(FileNotAllowedError) as caught:
            files.read_text(name, 1000)
        messages.add(str(caught.value))
    assert messages == {REFUSAL}
    assert "secret" not in REFUSAL and "outside" not in REFUSAL


def test_a_folder_is_accepted_only_when_asked_for(layout: dict[str, Path]) -> None:
    assert files.resolve("sub", folder_ok=True) == (layout["data"] / "sub").resolve()
    with pytest.raises(FileNotAllowedError):
        files.resolve(str(layout["outside"]), folder_ok=True)


def test_listed_offers_only_readable_files_inside(layout: dict[str, Path]) -> None:
    assert files.listed() == ["story.txt", "sub/deep.txt", "extra.txt"]  # not leak.txt


def test_a_long_file_is_read_up_to_the_limit_on_a_character_boundary(layout: dict[str, Path]) -> None:
    (layout["data"] / "long.txt").write_text("é" * 10)  # 2 bytes each
    read = files.read_text("long.txt", 5)
    assert (read.text, read.size, read.cut) == ("éé", 20, True)  # the half character at byte 5 is dropped


def test_a_file_that_is_not_utf8_is_one_line(layout: dict[str, Path]) -> None:
    (layout["data"] / "latin.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(InputError, match="^latin.txt is not UTF-8 text$"):
        files.read_text("latin.txt", 1000)


def test_uploads_and_texts_over_the_limit_are_refused() -> None:
    assert files.read_upload("a.txt", b"hello", 5).text == "hello"
    with pytest.raises(InputError, match="a.txt is 6 bytes, over this server's limit of 5 bytes"):
        files.read_upload("a.txt", b"hello!", 5)
    files.check_text("é" * 5, 10)
    with pytest.raises(InputError, match="the text is 12 bytes, over this server's limit of 10 bytes"):
        files.check_text("é" * 6, 10)


@pytest.mark.parametrize("name", ["/etc", "/nonexistent/dir", "..", "org/some-hub-model", "MiniLM"])
def test_a_model_off_the_list_gets_the_apis_line(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SINKFIX_API_MODELS", raising=False)
    with pytest.raises(ModelNotAllowedError) as caught:
        check_model(name)
    assert str(caught.value) == ServerConfig().refusal()
    check_model("minilm")
    monkeypatch.setenv("SINKFIX_API_MODELS", f"minilm,{name}")
    check_model(name)


def test_the_line_is_first_come_first_served_and_bounded() -> None:
    line = Line("m")
    first, second, third = line.join(1, 2), line.join(1, 2), line.join(1, 2)
    assert [line.position(t) for t in (first, second, third)] == [0, 1, 2]
    with pytest.raises(LineFullError, match="busy with m: 1 job\\(s\\) running and 2 waiting"):
        line.join(1, 2)
    line.leave(second)  # a visitor who gave up leaves the line
    assert line.position(third) == 1
    assert line.wait(third, 1, 0.01) == 1  # the first still runs
    line.leave(first)
    assert line.wait(third, 1, 0.01) == 0
    assert line.counts() == (1, 0)


def test_the_line_estimates_the_wait_from_recorded_durations() -> None:
    line = Line("m")
    assert line.estimate(1, 1) == 1.0  # a first guess before anything ran
    for seconds in (10.0,) * 60:
        line.record(seconds)
    assert abs(line.seconds_per_job - 10.0) < 1e-3  # the moving average settles on the durations
    line.seconds_per_job = 10.0
    assert line.estimate(0, 2) == 0.0  # running: no wait
    assert [line.estimate(k, 1) for k in (1, 2, 3)] == [10.0, 20.0, 30.0]  # one at a time
    assert [line.estimate(k, 2) for k in (1, 2, 3, 4)] == [10.0, 10.0, 20.0, 20.0]  # two at a time
    running, waiting = line.join(2, 1), line.join(2, 1)
    assert line.position(running) == line.position(waiting) == 0  # two slots: both run
    line.join(2, 1)
    with pytest.raises(LineFullError) as full:
        line.join(2, 1)
    # A job joining now would be second in line with two slots: one round of 10 s.
    assert full.value.retry_after == 10 and "try again in about 10 s" in str(full.value)


def test_threads_in_the_line_never_run_two_at_once() -> None:
    line, lock = Line("m"), threading.Lock()
    running, most, order = 0, 0, []

    def job(i: int) -> None:
        nonlocal running, most
        ticket = line.join(1, 8)
        while line.wait(ticket, 1, 0.05):
            pass
        with lock:
            running += 1
            most = max(most, running)
            order.append(i)
        time.sleep(0.01)
        with lock:
            running -= 1
        line.leave(ticket)

    threads = []
    for i in range(6):
        threads.append(threading.Thread(target=job, args=(i,)))
        threads[-1].start()
        time.sleep(0.005)  # join in order, so first come is first served
    for thread in threads:
        thread.join(10)
    assert most == 1 and sorted(order) == list(range(6))


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("[::1]", True), ("127.0.0.2", True), ("0.0.0.0", False), ("", False),
                                            (None, False), ("::", False), ("192.168.1.5", False),
                                            ("lab.example.org", False)])
def test_loopback_addresses(host: str | None, loopback: bool) -> None:
    assert signin.is_loopback(host) is loopback


@pytest.mark.parametrize("client, peer", [("127.0.0.1", False), ("::1", False), ("::ffff:127.0.0.1", False),
                                          ("10.1.2.3", True), ("2001:db8::1", True), ("::ffff:10.1.2.3", True),
                                          ("testclient", False), ("", False), (None, False)])
def test_network_peers_are_ip_addresses_beyond_loopback(client: str | None, peer: bool) -> None:
    assert signin.is_network_peer(client) is peer


def test_sign_in_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(signin.TOKEN_ENV, raising=False)
    assert not signin.SignIn.from_secrets({}).configured
    assert signin.SignIn.from_secrets({"auth": {"redirect_uri": "x"}}).oidc
    assert signin.SignIn.from_secrets({"sinkfix": {"token": "t" * 16}}).token == "t" * 16
    with pytest.raises(signin.SignInConfigError, match="at least 16 characters"):
        signin.SignIn.from_secrets({"sinkfix": {"token": "short"}})
    monkeypatch.setenv(signin.TOKEN_ENV, "e" * 20)  # the environment wins over the file
    assert signin.SignIn.from_secrets({"sinkfix": {"token": "t" * 16}}).token == "e" * 20
    assert signin.token_matches("e" * 20 + " \n", "e" * 20) and not signin.token_matches("e" * 19, "e" * 20)


def test_secrets_are_read_where_streamlit_reads_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[auth]\nredirect_uri = "http://h/oauth2callback"\n')
    assert signin.SignIn.from_secrets(signin.read_secrets(tmp_path)).oidc
    (tmp_path / ".streamlit" / "secrets.toml").write_text("[auth\n")
    with pytest.raises(signin.SignInConfigError, match="cannot be read as TOML"):
        signin.read_secrets(tmp_path)


def test_a_shared_start_without_sign_in_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(signin.TOKEN_ENV, raising=False)
    none = signin.SignIn(oidc=False, token=None)
    signin.check_shared_start("127.0.0.1", none)
    for host in ("0.0.0.0", None, "192.168.1.5"):
        with pytest.raises(signin.SharedWithoutSignInError, match="without sign-in"):
            signin.check_shared_start(host, none)
        signin.check_shared_start(host, signin.SignIn(oidc=False, token="t" * 16))
        signin.check_shared_start(host, signin.SignIn(oidc=True, token=None))
