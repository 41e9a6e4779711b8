"""Ownership of everything stored (issue 32, item 1), on the core: the rule, who a request is, every read of the
store as two owners and an administrator, sharing, the per-owner cache, the migration, and the CLI's --owner.

Every row is stored by alice or bob with a marker in its text or label; ``_reads`` counts the markers of the
other owner's private rows that a viewer gets back from every read the store offers. The target is 0."""
from __future__ import annotations

import inspect
import itertools
import json
import re
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from sinkfix.cli import main
from sinkfix.errors import CorpusNotFoundError, RunNotFoundError, SinkFixError
from sinkfix.policy import identity
from sinkfix.policy.ownership import LOCAL, NotOwnerError, Viewer
from sinkfix.store import Store, schema
from tests.store_v1 import build_v1_database
from tests.synthetic import synthetic_analysis

ALICE, BOB, ROOT = Viewer("alice"), Viewer("bob"), Viewer("root", admin=True)
CALIBRATION = {"model": "synthetic", "task": "nll", "metric": "nll", "kept_heads": [[0, 1]], "dev_baseline": 3.0,
               "heldout": {"target": {"delta_nll": -0.1}}}


def _seed(store: Store, viewer: Viewer) -> dict:
    """One private row of every kind for ``viewer``, each carrying the marker ``secret-<name>``."""
    mark = f"secret-{viewer.name}"
    seed = {"bob": 1, "alice": 2}.get(viewer.name, 3)
    run = synthetic_analysis(seed=seed, text=f"{mark} run text", model_name=f"{mark}-model")
    run_id = store.save(run, cache_key=f"key-{viewer.name}", viewer=viewer)
    corpus_id = store.open_corpus(f"{mark}-corpus", "synthetic", run.settings.to_dict(), "x.txt", viewer=viewer)
    (line_run,) = store.save_corpus_runs(corpus_id, [(1, synthetic_analysis(seed=seed + 10, text=f"{mark} line"), "k")])
    return {
        "mark": mark, "key": f"key-{viewer.name}", "run": run_id, "line_run": line_run, "corpus": f"{mark}-corpus", "corpus_id": corpus_id,
        "experiment": store.save_experiment("massive", {"model": "synthetic", "note": mark}, f"{mark} label", 1.0,
                                            viewer=viewer),
        "evaluation": store.save_evaluation("evaluate", {"model": "synthetic", "note": mark}, run_id, viewer=viewer),
        "calibration": (store.save_calibration(f"{mark}-heads", {**CALIBRATION, "note": mark}, viewer=viewer),
                        f"{mark}-heads")[1],
    }


@pytest.fixture()
def seeded(db_path: Path) -> tuple[Store, dict, dict]:
    store = Store(db_path)
    return store, _seed(store, ALICE), _seed(store, BOB)


def _reads(store: Store, viewer: Viewer, other: dict) -> dict[str, int]:
    """For every read the store offers, how many times ``other``'s marker comes back to ``viewer``."""
    mark = other["mark"]
    calls = {
        "list": lambda: store.list(viewer=viewer, limit=500),
        "list search": lambda: store.list(text_contains=mark, viewer=viewer),
        "count search": lambda: store.count(text_contains=mark, viewer=viewer) * [mark],
        "models": lambda: store.models(viewer=viewer),
        "get": lambda: store.get(other["run"], viewer=viewer).text,
        "info": lambda: store.info(other["run"], viewer=viewer),
        "created_at": lambda: [mark, store.created_at(other["run"], viewer=viewer)],
        "head_map": lambda: [mark, store.head_map(other["run"], 0, 0, viewer=viewer)],
        "token_rows": lambda: [mark, store.token_rows(other["run"], viewer=viewer)],
        "token_records": lambda: [mark, store.token_records(other["run"], viewer=viewer)],
        "token_strengths": lambda: [mark, store.token_strengths(other["run"], viewer=viewer)],
        "head_rows": lambda: [mark, store.head_rows(other["run"], viewer=viewer)],
        "find": lambda: [mark] if store.find(other["key"], viewer=viewer) else [],
        "corpora": lambda: store.corpora(viewer=viewer),
        "corpus": lambda: store.corpus(other["corpus"], viewer=viewer),
        "corpus_runs": lambda: store.corpus_runs(other["corpus_id"], viewer=viewer),
        "corpus_size": lambda: [mark, store.corpus_size(other["corpus_id"], viewer=viewer)],
        "corpora_of_run": lambda: [mark] * len(store.corpora_of_run(other["line_run"], viewer=viewer)),
        "corpus_head_rows": lambda: [mark, store.corpus_head_rows(other["corpus_id"], viewer=viewer)],
        "corpus_token_rows": lambda: [mark, store.corpus_token_rows(other["corpus_id"], viewer=viewer)],
        "experiments": lambda: store.experiments(viewer=viewer),
        "experiment": lambda: store.experiment(other["experiment"], viewer=viewer),
        "evaluations": lambda: store.evaluations(viewer=viewer),
        "evaluation": lambda: store.evaluation(other["evaluation"], viewer=viewer),
        "calibrations": lambda: store.calibrations(viewer=viewer),
        "calibration": lambda: store.calibration(other["calibration"], viewer=viewer),
        "sharing": lambda: store.sharing("run", other["run"], viewer=viewer),
    }
    leaks = {}
    for name, call in calls.items():
        try:
            found = json.dumps(call(), default=str)
        except (RunNotFoundError, CorpusNotFoundError):
            found = ""
        leaks[name] = found.count(mark)
    return leaks


def test_every_store_read_is_covered_by_the_leak_count() -> None:
    """A read added to the store without a viewer fails here; one with a viewer must join ``_reads``."""
    readers = {name for name, fn in inspect.getmembers(Store, inspect.isfunction)
               if "viewer" in inspect.signature(fn).parameters and not name.startswith("_")}
    writers = {"save", "delete", "reuse", "open_corpus", "relink_corpus_run", "delete_corpus", "save_experiment",
               "save_evaluation", "save_calibration", "set_shared"}
    source = inspect.getsource(_reads)
    derived = {"frame"}  # Store.frame is Store.list as a data frame
    assert sorted(name for name in readers - writers - derived if f"store.{name}(" not in source) == []
    for name, fn in inspect.getmembers(Store, inspect.isfunction):
        if name.startswith("_"):
            continue
        parameter = inspect.signature(fn).parameters.get("viewer")
        assert parameter is None or (parameter.kind is parameter.KEYWORD_ONLY and parameter.default is None), name


def test_a_call_without_a_viewer_reads_as_the_stores_own(db_path, tmp_path) -> None:
    """``Store()`` acts as ``local`` (a script, a notebook, the CLI); a server's ``Store(viewer=None)``
    refuses a call that names no visitor, so no route reads as someone else by omission."""
    Store(db_path, viewer=ALICE).save_experiment("lab", {"n": 1})
    assert Store(db_path, viewer=ALICE).experiments() and not Store(db_path).experiments()
    assert Store(db_path).experiments(viewer=ALICE)
    with pytest.raises(TypeError, match="viewer=None"):
        Store(db_path, viewer=None).experiments()


def test_the_servers_open_their_stores_without_a_default_viewer() -> None:
    root = Path(__file__).resolve().parents[2]
    for path in (root / "dashboard" / "services.py", root / "sinkfix" / "api" / "app.py"):
        calls = re.findall(r"Store\(([^)]*)\)", path.read_text())
        assert calls and all("viewer=None" in call for call in calls if call.strip()), (path, calls)


def test_no_owner_reads_another_owners_private_rows(seeded) -> None:
    store, alice, bob = seeded
    for viewer, own, other in ((ALICE, alice, bob), (BOB, bob, alice)):
        assert sum(_reads(store, viewer, other).values()) == 0, _reads(store, viewer, other)
        mine = _reads(store, viewer, own)  # the same reads do return the viewer's own rows
        assert all(mine[name] for name in ("list", "get", "info", "corpus", "experiment", "evaluation", "calibration"))


def test_the_missing_answer_is_the_same_for_a_private_and_an_absent_row(seeded) -> None:
    store, alice, _ = seeded
    for run_id in (alice["run"], 999):
        with pytest.raises(RunNotFoundError, match=f"^no run with id {run_id} in "):
            store.get(run_id, viewer=BOB)
    with pytest.raises(CorpusNotFoundError, match="^no corpus named 'secret-alice-corpus' in "):
        store.corpus(alice["corpus"], viewer=BOB)
    assert store.experiment(alice["experiment"], viewer=BOB) is None and store.experiment(999, viewer=BOB) is None
    with pytest.raises(TypeError, match="Viewer"):
        store.list(viewer="alice")  # a bare name carries no administrator flag: refused


def test_shared_rows_are_readable_but_not_writable(seeded) -> None:
    store, alice, bob = seeded
    for kind in ("run", "experiment", "evaluation", "corpus", "calibration"):
        store.set_shared(kind, alice[kind], True, viewer=ALICE)
    leaks = _reads(store, BOB, alice)
    assert all(leaks[name] for name in ("list", "list search", "get", "head_rows", "corpus", "corpus_runs",
                                        "experiment", "evaluation", "calibration"))
    for write in (lambda: store.delete(alice["run"], viewer=BOB),
                  lambda: store.delete_corpus(alice["corpus"], viewer=BOB),
                  lambda: store.set_shared("run", alice["run"], False, viewer=BOB),
                  lambda: store.set_shared("experiment", alice["experiment"], False, viewer=BOB),
                  lambda: store.set_shared("corpus", alice["corpus"], False, viewer=BOB)):
        with pytest.raises(NotOwnerError, match="belongs to alice: only its owner"):
            write()
    assert store.get(alice["run"], viewer=BOB).text.startswith("secret-alice")  # nothing changed
    store.relink_corpus_run(alice["line_run"], bob["run"], viewer=BOB)  # touches bob's corpora only
    assert [r["run_id"] for r in store.corpus_runs(alice["corpus_id"], viewer=ALICE)] == [alice["line_run"]]
    for kind in ("run", "experiment", "evaluation", "corpus", "calibration"):
        store.set_shared(kind, alice[kind], False, viewer=ALICE)
    assert sum(_reads(store, BOB, alice).values()) == 0  # unshared: missing again, the corpus's runs too


def test_an_administrator_reads_everything_and_changes_only_their_own(seeded) -> None:
    store, alice, bob = seeded
    for other in (alice, bob):
        leaks = _reads(store, ROOT, other)
        assert all(leaks[name] for name in ("list", "get", "corpus", "experiment", "evaluation", "calibration"))
    with pytest.raises(NotOwnerError):
        store.delete(alice["run"], viewer=ROOT)


def test_the_cache_serves_each_owner_their_own_row(seeded) -> None:
    store, alice, _ = seeded
    key = "key-alice"
    assert store.reuse(key, viewer=ALICE) == alice["run"]
    assert store.reuse(key, viewer=BOB) is None  # alice's private run never serves bob: he computes afresh
    store.set_shared("run", alice["run"], True, viewer=ALICE)
    copy = store.reuse(key, viewer=BOB)  # shared: bob gets his own copy, no forward pass
    assert copy not in (None, alice["run"]) and store.sharing("run", copy, viewer=BOB)["owner"] == "bob"
    original, mine = store.get(alice["run"], viewer=ALICE), store.get(copy, viewer=BOB)
    assert mine.text == original.text and (mine.maps == original.maps).all() and (mine.alpha == original.alpha).all()
    assert store.reuse(key, viewer=BOB) == copy  # his own from now on
    store.set_shared("run", alice["run"], False, viewer=ALICE)
    store.delete(alice["run"], viewer=ALICE)
    assert store.get(copy, viewer=BOB).text == original.text  # each copy lives on its own


def test_names_are_per_owner(db_path: Path) -> None:
    store = Store(db_path)
    settings = synthetic_analysis().settings.to_dict()
    ids = [store.open_corpus("dev", "synthetic", settings, "", viewer=v) for v in (ALICE, BOB)]
    assert ids[0] != ids[1]
    store.set_shared("corpus", "dev", True, viewer=BOB)
    assert store.corpus("dev", viewer=ALICE)["id"] == ids[0]  # one's own first
    assert store.corpus("dev", viewer=Viewer("carol"))["id"] == ids[1]  # else the shared one
    for viewer in (ALICE, BOB):
        store.save_calibration("heads", {**CALIBRATION, "note": viewer.name}, viewer=viewer)
    assert store.calibration("heads", viewer=BOB)["note"] == "bob" and len(store.calibrations(viewer=ROOT)) == 2


def test_the_read_rule_and_its_sql_agree() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (owner TEXT, shared INTEGER)")
    rows = list(itertools.product(["alice", "bob", "local"], [0, 1]))
    conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
    for viewer in (ALICE, LOCAL, ROOT, Viewer("nobody")):
        where, params = viewer.readable_sql()
        found = set(conn.execute(f"SELECT owner, shared FROM t WHERE {where}", params).fetchall())
        assert found == {row for row in rows if viewer.may_read(*row)}, viewer
    assert not ALICE.may_write("bob") and ALICE.may_write("alice") and not ROOT.may_write("alice")


def test_token_names_and_administrators(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = identity.named_tokens("alice=tok-a=1, bob = tok-b", "X")
    assert tokens == (("alice", "tok-a=1"), ("bob", "tok-b"))
    assert identity.token_owner(b"tok-b", tokens) == "bob" and identity.token_owner("tok-b ", tokens) == "bob"
    assert identity.token_owner(b"tok-c", tokens) is None and identity.token_owner(b"", tokens) is None
    for bad in ("alice", "=tok", "alice=t,bob=t", "a=x,a=y", "x\ty=t"):
        with pytest.raises(identity.IdentityConfigError):
            identity.named_tokens(bad, "X")
    monkeypatch.setenv(identity.ADMINS_ENV, "Root@Lab.example, ops")
    admins = identity.admins(["carol"])
    assert identity.viewer_named("root@lab.example", admins).admin and identity.viewer_named("carol", admins).admin
    assert not identity.viewer_named("alice", admins).admin
    with pytest.raises(SinkFixError):
        Viewer(" padded ")


def test_rows_stored_before_owners_are_locals(tmp_path: Path) -> None:
    """A database at schema step 7 with a row of every kind: after m008 each is ``local``'s and private, and the
    corpus and calibration names are unique per owner."""
    path = tmp_path / "v7.db"
    build_v1_database(path, [synthetic_analysis(seed=1)])
    conn = sqlite3.connect(path, isolation_level=None)
    schema.migrations(schema.STEPS[:7]).apply(Database(conn))
    conn.execute("INSERT INTO corpora (name, model, settings, source, created_at) VALUES ('c', 'm', '{}', '', 'now')")
    conn.execute("INSERT INTO corpus_runs VALUES (1, 1, 1)")
    conn.execute("INSERT INTO experiments (created_at, kind, model, result) VALUES ('now', 'massive', 'm', '{}')")
    conn.execute("INSERT INTO evaluations (created_at, kind, model, target, beta, result) "
                 "VALUES ('now', 'evaluate', 'm', 'first', 0, '{}')")
    conn.execute("INSERT INTO calibrations (name, created_at, model, task, metric, kept_heads, result) "
                 "VALUES ('h', 'now', 'm', 'nll', 'nll', '[]', '{}')")
    conn.close()
    store = Store(path)
    assert store.schema_version() == len(schema.STEPS)
    with sqlite3.connect(path) as db:
        for table in schema.OWNED_TABLES:
            assert db.execute(f"SELECT owner, shared FROM {table}").fetchall() == [("local", 0)], table
    nothing = (store.list(viewer=BOB), store.corpora(viewer=BOB), store.experiments(viewer=BOB),
               store.evaluations(viewer=BOB), store.calibrations(viewer=BOB), store.calibration("h", viewer=BOB))
    assert nothing == ([], [], [], [], [], None)
    assert store.corpus("c", viewer=LOCAL)["id"] == 1 and store.calibration("h", viewer=LOCAL) == {}
    assert [r["run_id"] for r in store.corpus_runs(1, viewer=LOCAL)] == [1]
    store.open_corpus("c", "m", {}, "", viewer=BOB)  # the same name, another owner: a new corpus


def test_the_cli_acts_as_local_unless_told(db_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = Store(db_path)
    alice, bob = _seed(store, ALICE), _seed(store, BOB)
    local = store.save(synthetic_analysis(seed=5, text="the machine's own run"), viewer=LOCAL)

    def run(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    assert main(["runs", "list", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [local]  # no --owner: local
    for owner, own, other in (("alice", alice, bob), ("bob", bob, alice)):
        listing = run("runs", "list", "--owner", owner)[1] + run("runs", "list", "--search", "secret", "--owner", owner)[1]
        assert own["mark"] in listing and other["mark"] not in listing
        for argv in (("runs", "show", str(other["run"])), ("runs", "export", str(other["run"]), "--json", "-"),
                     ("runs", "delete", str(other["run"])), ("runs", "share", str(other["run"])),
                     ("corpora", "show", other["corpus"]), ("corpora", "delete", other["corpus"])):
            code, out = run(*argv, "--owner", owner)  # the answer may echo the name asked for, nothing stored
            assert code == 2 and f"{other['mark']} " not in out and f"{other['mark']}-model" not in out
            assert "no run with id" in out or "no corpus named" in out
        assert other["mark"] not in run("corpora", "list", "--owner", owner)[1]
        assert other["mark"] not in run("evaluations", "--json", "--owner", owner)[1]
        assert other["mark"] not in run("calibrations", "--json", "--owner", owner)[1]
    assert run("runs", "share", str(alice["run"]), "--owner", "alice")[0] == 0
    assert run("runs", "share", "--experiment", str(alice["experiment"]), "--owner", "alice")[0] == 0
    code, out = run("runs", "show", str(alice["run"]), "--owner", "bob")
    assert code == 0 and "secret-alice run text" in out and "owner alice (shared)" in out
    code, out = run("runs", "delete", str(alice["run"]), "--owner", "bob")
    assert code == 2 and "only its owner" in out
    assert run("runs", "unshare", str(alice["run"]), "--owner", "alice")[0] == 0
    assert run("runs", "show", str(alice["run"]), "--owner", "bob")[0] == 2
