"""Corpora: named groups of runs (one per input line) made by ``sinkfix batch``, with their summary."""
from __future__ import annotations

import json

from sinkfix.errors import CorpusNotFoundError, StoreError
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
        """Every corpus with its number of lines (runs still stored), newest first; no summaries."""
        with self._sql_errors():
            return dicts(self._db().execute(
                "SELECT c.id, c.name, c.model, c.source, c.created_at, c.summary_at, "
                "(SELECT COUNT(*) FROM corpus_runs cr JOIN runs r ON r.id = cr.run_id "
                " WHERE cr.corpus_id = c.id) AS n_runs "
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

    def corpus_runs(self, corpus_id: int) -> list[dict]:
        """The corpus's lines in file order, with light run columns (as ``list`` gives)."""
        with self._sql_errors():
            return dicts(self._db().execute(
                "SELECT cr.line_no, r.id AS run_id, r.created_at, r.text, r.n_tokens, r.n_beneficial, "
                "r.n_detrimental, r.n_neutral FROM corpus_runs cr JOIN runs r ON r.id = cr.run_id "
                "WHERE cr.corpus_id = ? ORDER BY cr.line_no", [corpus_id]))

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
