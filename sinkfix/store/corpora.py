"""Corpora: named groups of runs (one per input line) made by ``sinkfix batch``, with their summary."""
from __future__ import annotations

import json

from sinkfix.analysis.result import Analysis
from sinkfix.errors import CorpusNotFoundError, StoreError
from sinkfix.store import codec
from sinkfix.store.runs import _insert_blobs, _insert_heads, _insert_run, _insert_tokens, _run_row, head_rows_of
from sinkfix.store.database import Connection, dicts, now, to_json, write


class CorporaTable(Connection):
    def open_corpus(self, name: str, model: str, settings: dict, source: str) -> int:
        """The id of corpus ``name``, created if new. An existing corpus must have the same model and
        settings: a corpus summarises one model under one set of settings."""
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                row = conn.execute("SELECT id, model, settings FROM corpora WHERE name = ?", [name]).fetchone()
                if row is None:
                    return int(conn.execute(
                        "INSERT INTO corpora (name, model, settings, source, created_at) VALUES (?, ?, ?, ?, ?)",
                        [name, model, to_json(settings), source, now()]).lastrowid)
        if row[1] != model or json.loads(row[2]) != settings:
            raise StoreError(
                f"corpus '{name}' was built with model {row[1]} and settings {row[2]}; "
                "give another --corpus name to analyse with a different model or settings"
            )
        return int(row[0])

    def add_corpus_run(self, corpus_id: int, line_no: int, run_id: int) -> None:
        """Line ``line_no`` of the corpus is run ``run_id`` (replacing what the line held before)."""
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                conn.execute("INSERT OR REPLACE INTO corpus_runs (corpus_id, line_no, run_id) VALUES (?, ?, ?)",
                             [corpus_id, line_no, run_id])

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
        """Insert runs already encoded by ``encode_run`` (outside the write lock) and link them."""
        ids = []
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                for line_no, run in items:
                    run_id = _insert_encoded(conn, run)
                    conn.execute("INSERT OR REPLACE INTO corpus_runs (corpus_id, line_no, run_id) VALUES (?, ?, ?)",
                                 [corpus_id, line_no, run_id])
                    ids.append(run_id)
        return ids

    def relink_corpus_run(self, old_run_id: int, new_run_id: int) -> int:
        """Point every corpus line that holds ``old_run_id`` at ``new_run_id`` (a recomputed run of the
        same text and settings, so corpus summaries do not change); returns how many lines moved."""
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                return conn.execute("UPDATE corpus_runs SET run_id = ? WHERE run_id = ?",
                                    [new_run_id, old_run_id]).rowcount

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

    def corpora(self) -> list[dict]:
        """Every corpus with its number of lines, newest first; no summaries. The count reads only the
        (corpus_id, line_no) primary key (a join to ``runs`` would cost a look-up per line: 0.3 s at 100k)."""
        with self._sql_errors():
            return dicts(self._db().execute(
                "SELECT c.id, c.name, c.model, c.source, c.created_at, c.summary_at, "
                "(SELECT COUNT(*) FROM corpus_runs cr WHERE cr.corpus_id = c.id) AS n_runs "
                "FROM corpora c ORDER BY c.created_at DESC, c.id DESC"))

    def corpus(self, name: str) -> dict:
        """One corpus: its row with ``settings`` decoded and ``summary`` as stored JSON text (or None)."""
        with self._sql_errors():
            rows = dicts(self._db().execute("SELECT * FROM corpora WHERE name = ?", [name]))
        if not rows:
            raise CorpusNotFoundError(f"no corpus named '{name}' in {self.path}")
        row = rows[0]
        row["settings"] = json.loads(row["settings"])
        return row

    def delete_corpus(self, name: str) -> None:
        """Forget the corpus (its runs stay in the history)."""
        corpus_id = self.corpus(name)["id"]
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                conn.execute("DELETE FROM corpus_runs WHERE corpus_id = ?", [corpus_id])
                conn.execute("DELETE FROM corpora WHERE id = ?", [corpus_id])

    def corpus_runs(self, corpus_id: int, limit: int | None = None, offset: int = 0) -> list[dict]:
        """The corpus's lines in file order, with light run columns (as ``list`` gives); one page of
        ``limit`` lines from ``offset`` when given (the primary key (corpus_id, line_no) serves it)."""
        sql = ("SELECT cr.line_no, r.id AS run_id, r.created_at, r.text, r.n_tokens, r.n_beneficial, "
               "r.n_detrimental, r.n_neutral, r.has_maps FROM corpus_runs cr JOIN runs r ON r.id = cr.run_id "
               "WHERE cr.corpus_id = ?")
        params: list = [corpus_id]
        if limit is not None:
            # Skip ``offset`` lines on the primary key alone, then join only the page's lines.
            sql += (" AND cr.line_no >= (SELECT line_no FROM corpus_runs WHERE corpus_id = ? ORDER BY line_no "
                    "LIMIT 1 OFFSET ?) ORDER BY cr.line_no LIMIT ?")
            params += [corpus_id, int(offset), int(limit)]
        else:
            sql += " ORDER BY cr.line_no"
        with self._sql_errors():
            return dicts(self._db().execute(sql, params))

    def corpus_size(self, corpus_id: int) -> int:
        """How many lines the corpus links (an index-only count)."""
        with self._sql_errors():
            return int(self._db().execute("SELECT COUNT(*) FROM corpus_runs WHERE corpus_id = ?",
                                          [corpus_id]).fetchone()[0])

    def corpora_of_run(self, run_id: int) -> list[dict]:
        """The corpora (name, line_no) that hold ``run_id``."""
        with self._sql_errors():
            return dicts(self._db().execute(
                "SELECT c.name, cr.line_no FROM corpus_runs cr JOIN corpora c ON c.id = cr.corpus_id "
                "WHERE cr.run_id = ? ORDER BY c.name, cr.line_no", [run_id]))

    def corpus_head_rows(self, corpus_id: int) -> list[dict]:
        """(line_no, layer, head, top_alpha) of every run in the corpus, for the summary."""
        with self._sql_errors():
            return dicts(self._db().execute(
                "SELECT cr.line_no, h.layer, h.head, h.top_alpha FROM corpus_runs cr "
                "JOIN run_heads h ON h.run_id = cr.run_id WHERE cr.corpus_id = ? "
                "ORDER BY cr.line_no, h.layer, h.head", [corpus_id]))

    def corpus_token_rows(self, corpus_id: int) -> list[dict]:
        """(line_no, idx, token, value_norm, sink_rate, label) of every run in the corpus, for the summary."""
        with self._sql_errors():
            return dicts(self._db().execute(
                "SELECT cr.line_no, t.idx, t.token, t.value_norm, t.sink_rate, t.label FROM corpus_runs cr "
                "JOIN run_tokens t ON t.run_id = cr.run_id WHERE cr.corpus_id = ? "
                "ORDER BY cr.line_no, t.idx", [corpus_id]))


# A run's row, token rows, head rows and blobs, as RunsTable.save writes them.
EncodedRun = tuple[dict, list, list, dict]


def encode_run(analysis: Analysis, key: str) -> EncodedRun:
    """What ``RunsTable.save`` writes for one run, encoded before the write lock is taken (the slow part)."""
    blobs, corrected_stored = codec.encode_blobs(analysis)
    row = _run_row(analysis, key, analysis.created_at or now(), corrected_stored)
    row["parent_run_id"] = analysis.parent_run_id
    tokens = [(r["index"], r["token"], r["att_received"], r["value_norm"], r["sink_rate"], r["label"])
              for r in analysis.token_table()]
    return row, tokens, head_rows_of(analysis), blobs


def _insert_encoded(conn, run: EncodedRun) -> int:
    row, tokens, heads, blobs = run
    run_id = _insert_run(conn, row)
    _insert_tokens(conn, run_id, tokens)
    _insert_heads(conn, run_id, heads)
    _insert_blobs(conn, run_id, blobs)
    return run_id
