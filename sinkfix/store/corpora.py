"""Corpora: named groups of runs (one per input line) made by ``sinkfix batch``, with their summary.

A corpus has an owner, and its runs are that owner's. Names are unique per owner; looked up by name, the
viewer's own corpus comes first, then the newest one shared with them (any, for an administrator).
Sharing a corpus shares its runs (``SharingTable.set_shared``). The writes that take a ``corpus_id``
are the engines', with the id ``open_corpus`` gave them for the viewer's own corpus.
"""
from __future__ import annotations

import json

from sinkfix.analysis.result import Analysis
from sinkfix.errors import CorpusNotFoundError, StoreError
from sinkfix.policy.ownership import Viewer
from sinkfix.store.database import Connection, dicts, now, to_json, write
from sinkfix.store.run_rows import EncodedRun, encode_run, insert_encoded

__all__ = ["CorporaTable", "EncodedRun", "encode_run"]


class CorporaTable(Connection):
    def open_corpus(self, name: str, model: str, settings: dict, source: str, *, viewer: Viewer | None = None) -> int:
        """The id of the viewer's corpus ``name``, created if new. An existing corpus must have the same model
        and settings: a corpus summarises one model under one set of settings."""
        viewer = self._viewer(viewer)
        owner = viewer.name
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                row = conn.execute("SELECT id, model, settings FROM corpora WHERE owner = ? AND name = ?",
                                   [owner, name]).fetchone()
                if row is None:
                    return int(conn.execute(
                        "INSERT INTO corpora (owner, shared, name, model, settings, source, created_at) "
                        "VALUES (?, 0, ?, ?, ?, ?, ?)", [owner, name, model, to_json(settings), source, now()]).lastrowid)
        if row[1] != model or json.loads(row[2]) != settings:
            raise StoreError(
                f"corpus '{name}' was built with model {row[1]} and settings {row[2]}; "
                "give another --corpus name to analyse with a different model or settings"
            )
        return int(row[0])

    def add_corpus_run(self, corpus_id: int, line_no: int, run_id: int) -> None:
        """Line ``line_no`` of the corpus is run ``run_id`` (replacing what the line held before)."""
        self.add_corpus_runs(corpus_id, [(line_no, run_id)])

    def add_corpus_runs(self, corpus_id: int, pairs: list[tuple[int, int]]) -> None:
        """Many ``(line_no, run_id)`` links in one transaction (a resumed batch links every stored line)."""
        if not pairs:
            return
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                conn.executemany("INSERT OR REPLACE INTO corpus_runs (corpus_id, line_no, run_id) VALUES (?, ?, ?)",
                                 [(corpus_id, line_no, run_id) for line_no, run_id in pairs])

    def save_corpus_runs(self, corpus_id: int, items: list[tuple[int, Analysis, str]]) -> list[int]:
        """Save ``(line_no, analysis, cache_key)`` runs and link them, all in one transaction.

        The Ray driver writes a batch of results this way (one writer, far fewer commits); each run
        is still whole or absent after a crash, since the transaction holds whole runs only.
        """
        return self.insert_corpus_runs(corpus_id, [(line_no, encode_run(analysis, key))
                                                   for line_no, analysis, key in items])

    def insert_corpus_runs(self, corpus_id: int, items: list[tuple[int, EncodedRun]]) -> list[int]:
        """Insert runs already encoded by ``encode_run`` (outside the write lock), owned by the corpus's owner,
        and link them."""
        ids = []
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                found = conn.execute("SELECT owner FROM corpora WHERE id = ?", [corpus_id]).fetchone()
                if found is None:
                    raise CorpusNotFoundError(f"no corpus with id {corpus_id} in {self.path}")
                for line_no, run in items:
                    run_id = insert_encoded(conn, run, found[0])
                    conn.execute("INSERT OR REPLACE INTO corpus_runs (corpus_id, line_no, run_id) VALUES (?, ?, ?)",
                                 [corpus_id, line_no, run_id])
                    ids.append(run_id)
        return ids

    def relink_corpus_run(self, old_run_id: int, new_run_id: int, *, viewer: Viewer | None = None) -> int:
        """Point every line of the viewer's own corpora that holds ``old_run_id`` at ``new_run_id`` (a recomputed
        run of the same text and settings, so corpus summaries do not change); returns how many lines moved."""
        viewer = self._viewer(viewer)
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                return conn.execute(
                    "UPDATE corpus_runs SET run_id = ? WHERE run_id = ? AND corpus_id IN "
                    "(SELECT id FROM corpora WHERE owner = ?)", [new_run_id, old_run_id, viewer.name]
                ).rowcount

    def trim_corpus(self, corpus_id: int, line_nos: list[int]) -> int:
        """Drop the corpus's lines not in ``line_nos`` (the file changed); returns how many were dropped."""
        keep = set(line_nos)
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                stale = [n for (n,) in conn.execute(
                    "SELECT line_no FROM corpus_runs WHERE corpus_id = ?", [corpus_id]) if n not in keep]
                conn.executemany("DELETE FROM corpus_runs WHERE corpus_id = ? AND line_no = ?",
                                 [(corpus_id, n) for n in stale])
        return len(stale)

    def save_corpus_summary(self, corpus_id: int, summary_json: str | None) -> None:
        """Store the summary; None marks it out of date (a batch is running or was interrupted)."""
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                conn.execute("UPDATE corpora SET summary = ?, summary_at = ? WHERE id = ?",
                             [summary_json, now(), corpus_id])

    # ------------------------------------------------------------ reading

    def corpora(self, *, viewer: Viewer | None = None) -> list[dict]:
        """Every corpus the viewer may read, with its number of lines, newest first; no summaries. The count
        reads only the (corpus_id, line_no) primary key (a join to ``runs`` would cost a look-up per line:
        0.3 s at 100k)."""
        viewer = self._viewer(viewer)
        readable, params = viewer.readable_sql("c")
        with self._sql_errors():
            rows = dicts(self._db().execute(
                "SELECT c.id, c.name, c.model, c.source, c.created_at, c.summary_at, c.owner, c.shared, "
                "(SELECT COUNT(*) FROM corpus_runs cr WHERE cr.corpus_id = c.id) AS n_runs "
                f"FROM corpora c WHERE {readable} ORDER BY c.created_at DESC, c.id DESC", params))
        for row in rows:
            row["shared"] = bool(row["shared"])
        return rows

    def corpus(self, name: str, *, viewer: Viewer | None = None, owner: str | None = None) -> dict:
        """One corpus: its row with ``settings`` decoded and ``summary`` as stored JSON text (or None).
        Names are per owner: without ``owner`` the viewer's own comes first, then the newest they may read."""
        viewer = self._viewer(viewer)
        readable, params = viewer.readable_sql()
        whose, whose_params = ("AND owner = ?", [owner]) if owner is not None else ("", [])
        with self._sql_errors():
            rows = dicts(self._db().execute(
                f"SELECT * FROM corpora WHERE name = ? {whose} AND {readable} ORDER BY owner = ? DESC, created_at DESC, "
                "id DESC LIMIT 1", [name, *whose_params, *params, viewer.name]))
        if not rows:
            raise CorpusNotFoundError(f"no corpus named '{name}' in {self.path}")
        row = rows[0]
        row["settings"] = json.loads(row["settings"])
        row["shared"] = bool(row["shared"])
        return row

    def delete_corpus(self, name: str, *, viewer: Viewer | None = None) -> None:
        """Forget the viewer's own corpus ``name`` (its runs stay in the history)."""
        viewer = self._viewer(viewer)
        corpus = self.corpus(name, viewer=viewer)
        viewer.check_write(corpus["owner"], f"corpus '{name}'")
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                conn.execute("DELETE FROM corpus_runs WHERE corpus_id = ?", [corpus["id"]])
                conn.execute("DELETE FROM corpora WHERE id = ?", [corpus["id"]])

    def corpus_runs(self, corpus_id: int, limit: int | None = None, offset: int = 0, *, viewer: Viewer | None = None) -> list[dict]:
        """The corpus's lines in file order, with light run columns (as ``list`` gives); one page of
        ``limit`` lines from ``offset`` when given (the primary key (corpus_id, line_no) serves it).
        Only lines whose run the viewer may read are listed."""
        viewer = self._viewer(viewer)
        self._readable_corpus(corpus_id, viewer)
        readable, params = viewer.readable_sql("r")
        sql = ("SELECT cr.line_no, r.id AS run_id, r.created_at, r.text, r.n_tokens, r.n_beneficial, "
               "r.n_detrimental, r.n_neutral, r.has_maps FROM corpus_runs cr JOIN runs r ON r.id = cr.run_id "
               f"WHERE cr.corpus_id = ? AND {readable}")
        params = [corpus_id, *params]
        if limit is not None:
            # Skip ``offset`` lines on the primary key alone, then join only the page's lines.
            sql += (" AND cr.line_no >= (SELECT line_no FROM corpus_runs WHERE corpus_id = ? ORDER BY line_no "
                    "LIMIT 1 OFFSET ?) ORDER BY cr.line_no LIMIT ?")
            params += [corpus_id, int(offset), int(limit)]
        else:
            sql += " ORDER BY cr.line_no"
        with self._sql_errors():
            return dicts(self._db().execute(sql, params))

    def corpus_size(self, corpus_id: int, *, viewer: Viewer | None = None) -> int:
        """How many lines the corpus links (an index-only count)."""
        viewer = self._viewer(viewer)
        self._readable_corpus(corpus_id, viewer)
        with self._sql_errors():
            return int(self._db().execute("SELECT COUNT(*) FROM corpus_runs WHERE corpus_id = ?",
                                          [corpus_id]).fetchone()[0])

    def corpora_of_run(self, run_id: int, *, viewer: Viewer | None = None) -> list[dict]:
        """The corpora (name, line_no) the viewer may read that hold ``run_id``."""
        viewer = self._viewer(viewer)
        readable, params = viewer.readable_sql("c")
        with self._sql_errors():
            return dicts(self._db().execute(
                "SELECT c.name, cr.line_no FROM corpus_runs cr JOIN corpora c ON c.id = cr.corpus_id "
                f"WHERE cr.run_id = ? AND {readable} ORDER BY c.name, cr.line_no", [run_id, *params]))

    def corpus_head_rows(self, corpus_id: int, *, viewer: Viewer | None = None) -> list[dict]:
        """(line_no, layer, head, top_alpha) of every run in the corpus, for the summary."""
        viewer = self._viewer(viewer)
        self._readable_corpus(corpus_id, viewer)
        with self._sql_errors():
            return dicts(self._db().execute(
                "SELECT cr.line_no, h.layer, h.head, h.top_alpha FROM corpus_runs cr "
                "JOIN run_heads h ON h.run_id = cr.run_id WHERE cr.corpus_id = ? "
                "ORDER BY cr.line_no, h.layer, h.head", [corpus_id]))

    def corpus_token_rows(self, corpus_id: int, *, viewer: Viewer | None = None) -> list[dict]:
        """(line_no, idx, token, value_norm, sink_rate, label) of every run in the corpus, for the summary."""
        viewer = self._viewer(viewer)
        self._readable_corpus(corpus_id, viewer)
        with self._sql_errors():
            return dicts(self._db().execute(
                "SELECT cr.line_no, t.idx, t.token, t.value_norm, t.sink_rate, t.label FROM corpus_runs cr "
                "JOIN run_tokens t ON t.run_id = cr.run_id WHERE cr.corpus_id = ? "
                "ORDER BY cr.line_no, t.idx", [corpus_id]))

    def _readable_corpus(self, corpus_id: int, viewer: Viewer) -> None:
        readable, params = viewer.readable_sql()
        with self._sql_errors():
            found = self._db().execute(f"SELECT 1 FROM corpora WHERE id = ? AND {readable}",
                                       [corpus_id, *params]).fetchone()
        if found is None:
            raise CorpusNotFoundError(f"no corpus with id {corpus_id} in {self.path}")
