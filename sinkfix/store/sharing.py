"""Sharing: an owner marks a row shared (every viewer may read it) or private again, whatever its kind.

Runs, evaluations and experiments are named by id; corpora and calibrations by name (the viewer's own of
that name). Sharing a corpus shares its runs too (its lines show their texts), and unsharing it makes
them private again, in one transaction. A row the viewer may not read is missing; one they may read but
do not own is not theirs to change (NotOwnerError).
"""
from __future__ import annotations

from sinkfix.errors import CorpusNotFoundError, RunNotFoundError, StoreError
from sinkfix.policy.ownership import Viewer
from sinkfix.store.database import Connection, write

# kind -> (table, the column that names a row, what a missing one is)
KINDS = {
    "run": ("runs", "id", RunNotFoundError),
    "evaluation": ("evaluations", "id", StoreError),
    "experiment": ("experiments", "id", StoreError),
    "corpus": ("corpora", "name", CorpusNotFoundError),
    "calibration": ("calibrations", "name", StoreError),
}


class SharingTable(Connection):
    def sharing(self, kind: str, key: int | str, *, viewer: Viewer | None = None, owner: str | None = None) -> dict:
        """``{"id", "owner", "shared", "mine"}`` of a row the viewer may read (their own first, for a name,
        unless ``owner`` says whose)."""
        viewer = self._viewer(viewer)
        table, column, missing = _kind(kind)
        readable, params = viewer.readable_sql()
        whose, whose_params = ("AND owner = ?", [owner]) if owner is not None else ("", [])
        with self._sql_errors():
            found = self._db().execute(
                f"SELECT id, owner, shared FROM {table} WHERE {column} = ? {whose} AND {readable} "
                "ORDER BY owner = ? DESC, id DESC LIMIT 1", [key, *whose_params, *params, viewer.name]).fetchone()
        if found is None:
            raise missing(_missing(kind, key, self.path))
        return {"id": int(found[0]), "owner": found[1], "shared": bool(found[2]), "mine": viewer.may_write(found[1])}

    def set_shared(self, kind: str, key: int | str, shared: bool, *, viewer: Viewer | None = None) -> int:
        """Share (or unshare) the viewer's own row; returns its id."""
        viewer = self._viewer(viewer)
        table, column, _ = _kind(kind)
        owner = viewer.name
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                found = conn.execute(f"SELECT id FROM {table} WHERE {column} = ? AND owner = ?", [key, owner]).fetchone()
                if found is None:  # not theirs: both lines below raise (missing, or someone else's)
                    row = self.sharing(kind, key, viewer=viewer)
                    viewer.check_write(row["owner"], f"{kind} {key}")
                row_id = int(found[0])
                conn.execute(f"UPDATE {table} SET shared = ? WHERE id = ?", [int(bool(shared)), row_id])
                if kind == "corpus":
                    conn.execute("UPDATE runs SET shared = ? WHERE owner = ? AND id IN "
                                 "(SELECT run_id FROM corpus_runs WHERE corpus_id = ?)", [int(bool(shared)), owner, row_id])
        return row_id


def _kind(kind: str) -> tuple[str, str, type[StoreError]]:
    if kind not in KINDS:
        raise StoreError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return KINDS[kind]


def _missing(kind: str, key: int | str, path: object) -> str:
    if kind == "run":
        return f"no run with id {key} in {path}"
    named = "named '{}'".format(key) if KINDS[kind][1] == "name" else f"with id {key}"
    return f"no {kind} {named} in {path}"
