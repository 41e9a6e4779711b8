"""A dashboard safe on a shared machine (issue 25), through AppTest: files only from the data folders,
models only from the server's list, sign-in when shared, one job per model in a bounded line."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import access, services, visitors
from sinkfix.policy import ServerConfig
from sinkfix.policy.files import REFUSAL
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from .conftest import OIDC, open_page, page_text

EXPERIMENTS, ANALYZE = "views/experiments.py", "views/analyze.py"
SECRET = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
LEAKS = ("AWS", "SECRET", "wJalr", "EXAMPLEKEY")  # any fragment of the planted file
FORMS = {  # text-file box -> (model box, run button)
    "mech_sr_file": ("mech_sr_model", "mech_sr_run"),
    "lc_file": ("lc_model", "lc_run"),
    "lc_q_file": ("lc_q_model", "lc_q_run"),
}


@pytest.fixture()
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A data folder holding story.txt (and a symlink leading out), and a planted secret outside it."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "story.txt").write_text("the quick brown fox jumps over the lazy dog and runs far away " * 40)
    (outside / "secret.txt").write_text(f"line 0 {SECRET}\n" * 50)
    (data / "leak.txt").symlink_to(outside / "secret.txt")
    monkeypatch.setenv("SINKFIX_DATA", str(data))
    monkeypatch.delenv("SINKFIX_DATA_DIRS", raising=False)
    return {"data": data, "secret": outside / "secret.txt"}


def uploader(app: AppTest, key: str = "mech_sr_file_upload"):
    return next(u for u in app.get("file_uploader") if u.key == key)


def everything_shown(app: AppTest) -> str:
    """Every value the page holds, widgets included, as one string."""
    kinds = ("title", "header", "subheader", "markdown", "caption", "text", "code", "info", "warning", "success",
             "error", "exception", "dataframe", "table", "metric", "json", "status", "expander")
    parts = [page_text(app)]
    for kind in kinds:
        for element in app.get(kind):
            parts.append(str(getattr(element, "value", "")) + str(getattr(element, "label", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("box, name", [  # each form, each way of naming the planted file, and a missing one
    ("mech_sr_file", "{secret}"), ("lc_file", "../outside/secret.txt"), ("lc_q_file", "leak.txt"),
    ("mech_sr_file", "missing.txt"),
])
def test_a_file_outside_the_data_folders_is_one_error_stores_nothing_shows_nothing(
        db_path: Path, planted: dict[str, Path], load_calls: list[str], box: str, name: str) -> None:
    model, button = FORMS[box]
    app = open_page(EXPERIMENTS)
    app.selectbox(key=model).select("minilm").run()
    app.text_input(key=box).set_value(name.format(secret=planted["secret"]))
    app = app.button(key=button).click().run()
    assert not app.exception
    assert [e.value for e in app.error] == [REFUSAL]  # the same line for a missing, a forbidden, a symlinked file
    assert Store(db_path).experiments(viewer=LOCAL) == []
    shown = everything_shown(app)
    assert not [leak for leak in LEAKS if leak in shown]
    assert load_calls == []  # the file is refused before any model loads


def test_the_file_boxes_start_on_a_file_that_exists_or_empty(db_path: Path, planted: dict[str, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_page(EXPERIMENTS)
    assert [app.text_input(key=box).value for box in FORMS] == ["story.txt"] * 3
    (planted["data"] / "tinyshakespeare.txt").write_text("First Citizen:\n")
    app = open_page(EXPERIMENTS)
    assert [app.text_input(key=box).value for box in FORMS] == ["tinyshakespeare.txt"] * 3
    empty = planted["data"].parent / "empty"
    empty.mkdir()
    monkeypatch.setenv("SINKFIX_DATA", str(empty))
    app = open_page(EXPERIMENTS)
    assert [app.text_input(key=box).value for box in FORMS] == [""] * 3


def test_an_upload_is_used_by_name_and_one_over_the_limit_is_refused(
        db_path: Path, planted: dict[str, Path], load_calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_page(EXPERIMENTS)
    app.selectbox(key="mech_sr_model").select("minilm")
    app.text_input(key="mech_sr_file").set_value(str(planted["secret"]))  # the upload wins over the name
    uploader(app).set_value(("mine.txt", b"the cat sat on the mat and the dog ran " * 20, "text/plain"))
    app.number_input(key="mech_sr_n").set_value(2)
    app.number_input(key="mech_sr_length").set_value(8)
    app = app.button(key="mech_sr_run").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    (row,) = Store(db_path).experiments(kind="sinkrate", viewer=LOCAL)
    stored = Store(db_path).experiment(row["id"], viewer=LOCAL)["result"]
    assert stored["text_file"] == "mine.txt"  # the upload's own name, no server path
    assert all(len(kind["example"]) <= 8 for kind in stored["kinds"].values())  # no more of the text than shown

    monkeypatch.setenv("SINKFIX_MAX_BODY", "100")
    app = open_page(EXPERIMENTS)
    app.selectbox(key="mech_sr_model").select("minilm")
    uploader(app).set_value(("big.txt", b"x" * 101, "text/plain"))
    app = app.button(key="mech_sr_run").click().run()
    assert [e.value for e in app.error] == ["big.txt is 101 bytes, over this server's limit of 100 bytes "
                                            "(SINKFIX_MAX_BODY)"]
    assert len(Store(db_path).experiments(viewer=LOCAL)) == 1


@pytest.mark.parametrize("page, picker, box, run", [
    (ANALYZE, "an_model", "an_model_other", "an_run"),
    (EXPERIMENTS, "lc_model", "lc_model_other", "lc_run"),
])
def test_a_model_off_the_list_is_refused_as_a_missing_one(db_path: Path, planted: dict[str, Path], tmp_path: Path,
                                                         load_calls: list[str], page: str, picker: str, box: str,
                                                         run: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SINKFIX_API_MODELS", raising=False)
    folder = tmp_path / "a-model"  # a folder that looks like a model: config.json and weights
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    answers = []
    app = open_page(page)
    app.selectbox(key=picker).select("Other: hub id or local path").run()
    for name in (str(folder), str(tmp_path / "missing"), "/etc"):
        app.text_input(key=box).set_value(name)
        app = app.button(key=run).click().run()
        assert not app.exception
        answers.append([e.value for e in app.error])
    assert answers == [[ServerConfig().refusal()]] * 3  # one line, the same for a model folder and a missing path
    assert load_calls == [] and Store(db_path).count(viewer=LOCAL) == 0 and Store(db_path).experiments(viewer=LOCAL) == []


# ---------------------------------------------------------------- sign-in


def test_served_beyond_loopback_without_sign_in_shows_nothing(db_path: Path, load_calls: list[str]) -> None:
    from streamlit import config

    config.set_option("server.address", "0.0.0.0")  # the autouse fixture puts 127.0.0.1 back
    app = open_page()
    assert not app.exception
    assert len(app.error) == 1 and "without sign-in" in app.error[0].value
    assert "Latest runs" not in page_text(app)  # the home page never ran


def test_a_shared_token_is_asked_once_per_session(db_path: Path, load_calls: list[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit import config

    config.set_option("server.address", "0.0.0.0")
    monkeypatch.setenv("SINKFIX_DASHBOARD_TOKEN", "lab-token-0123456789")
    monkeypatch.setattr(access, "WRONG_TOKEN_PAUSE", 0.0)
    app = open_page()
    assert app.text_input(key="_sinkfix_token") is not None and "Latest runs" not in page_text(app)
    app.text_input(key="_sinkfix_token").set_value("lab-token-012345678X")
    app = app.button[0].click().run()
    assert [e.value for e in app.error] == ["That token is not right."]
    assert "Latest runs" not in page_text(app)
    app.text_input(key="_sinkfix_token").set_value("lab-token-0123456789")
    app = app.button[0].click().run()
    assert not app.error and "Latest runs" in page_text(app)
    app.switch_page(ANALYZE).run()  # the same session: not asked again
    assert not app.error and app.text_area(key="an_text") is not None


def test_oidc_sign_in_uses_st_login(db_path: Path, load_calls: list[str]) -> None:
    app = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "dashboard" / "Home.py"), default_timeout=60)
    app.secrets["auth"] = OIDC
    app.user = {"is_logged_in": False}
    app.run()
    assert not app.exception
    assert [b.label for b in app.button] == ["Sign in"] and "Latest runs" not in page_text(app)
    app.user = {"is_logged_in": True, "email": "ada@lab.example"}
    app.run()
    assert not app.exception and "Latest runs" in page_text(app)
    assert "Signed in as ada@lab\\.example" in page_text(app)


# ---------------------------------------------------------------- limits


def test_one_job_per_model_and_a_bounded_line_across_sessions(db_path: Path, load_calls: list[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Three visitors ask for minilm at once with room for one running and one waiting: the first runs,
    the second waits with its place shown, the third is told the line is full; never two at once."""
    monkeypatch.setenv("SINKFIX_MAX_QUEUE", "1")
    visitors.LINES.clear()
    release, lock = threading.Event(), threading.Lock()
    running, most = 0, 0
    real = services.analyze_or_fetch

    def gated(*args, **kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            release.wait(60)
            return real(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(services, "analyze_or_fetch", gated)
    apps: dict[str, AppTest] = {}

    def visit(name: str) -> None:
        app = open_page(ANALYZE)
        app.text_area(key="an_text").set_value(f"The {name} visitor's text.")
        apps[name] = app.button(key="an_run").click().run()

    line = visitors.LINES["minilm"]
    threads = {name: threading.Thread(target=visit, args=(name,)) for name in ("first", "second", "third")}
    for name, counts in (("first", (1, 0)), ("second", (1, 1))):
        threads[name].start()
        _until(lambda: line.counts() == counts)
    threads["third"].start()
    threads["third"].join(60)  # refused at once: the line is full
    release.set()
    for thread in threads.values():
        thread.join(60)
    assert most == 1
    assert [e.value for e in apps["third"].error] == [
        # No job has finished yet: the line's first guess, 1 s per job, for the running one and the waiting one.
        "the server is busy with minilm: 1 job(s) running and 1 waiting, its limit; try again in about 2 s"]
    assert not apps["first"].error and not apps["second"].error
    assert "Waited in line for minilm: number 1" in page_text(apps["second"])
    assert sorted(r["text"] for r in Store(db_path).list(viewer=LOCAL)) == ["The first visitor's text.",
                                                                "The second visitor's text."]
    assert line.counts() == (0, 0)  # every ticket left


class Box:
    """What job_turn draws into: the waiting notice, replaced in place, then the caption."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def empty(self) -> Box:
        return self

    def info(self, text: str, icon: str | None = None) -> None:
        self.shown.append(text)

    def caption(self, text: str) -> None:
        self.shown.append(text)


def test_a_waiting_visitor_sees_their_place_and_the_expected_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKFIX_MAX_QUEUE", "2")
    visitors.LINES.clear()
    line = visitors.LINES["minilm"]
    line.seconds_per_job = 30.0  # as if earlier jobs had taken 30 s
    holder = line.join(1, 2)  # another visitor's job runs
    box, entered = Box(), threading.Event()

    def wait_and_run() -> None:
        with visitors.job_turn("minilm", box):
            entered.set()

    waiter = threading.Thread(target=wait_and_run)
    waiter.start()
    _until(lambda: box.shown)
    assert box.shown[0] == ("Waiting for minilm: number 1 in line (1 running, 1 waiting; one job per model runs at "
                            "a time on this server), about 30 s to go.")
    assert not entered.is_set()
    line.leave(holder)
    waiter.join(60)
    assert entered.is_set() and box.shown[-1] == "Waited in line for minilm: number 1 when this job was asked for."
    assert line.counts() == (0, 0) and line.seconds_per_job < 30.0  # its own (short) time was recorded


def _until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the line"
        time.sleep(0.02)
