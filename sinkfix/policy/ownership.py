"""Who may read and change a stored row: the one rule for runs, evaluations, experiments, corpora and
calibrations, in every route (dashboard pages, the HTTP API, the CLI, the store's own queries).

Every stored row has an ``owner`` (a signed-in identity, an API token's name, or ``local``: the
machine's own user, a loopback dashboard, the CLI) and a ``shared`` flag its owner sets.

- A viewer **reads** their own rows and rows marked shared; an administrator reads every row.
- Only the owner **changes** a row (deletes it, shares or unshares it); an administrator too
  reads without owning, so they change only their own rows.
- A row a viewer may not read answers exactly as a missing one would.

The rule is written twice, side by side: ``Viewer.may_read`` for rows already in hand and
``Viewer.readable_sql`` for the store's WHERE clauses (a test checks they agree), so no route
filters rows its own way. Who a request *is* (token names, sign-in, administrators) is
``sinkfix.policy.identity``'s job.
"""
from __future__ import annotations

from dataclasses import dataclass

from sinkfix.errors import SinkFixError

LOCAL_NAME = "local"
MAX_NAME = 200


class NotOwnerError(SinkFixError):
    """The viewer may read the row (it is shared with them) but it is not theirs to change."""


@dataclass(frozen=True)
class Viewer:
    """Who is asking: the owner name of the rows they write, and whether they read every row."""

    name: str
    admin: bool = False

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not name.strip() or name != name.strip() or len(name) > MAX_NAME \
                or any(ord(c) < 32 for c in name):
            raise SinkFixError(f"an owner name must be 1 to {MAX_NAME} printable characters without surrounding "
                               f"spaces, got {name!r}")

    def may_read(self, owner: str, shared: bool | int) -> bool:
        return self.admin or bool(shared) or owner == self.name

    def may_write(self, owner: str) -> bool:
        return owner == self.name

    def readable_sql(self, table: str = "") -> tuple[str, list]:
        """``may_read`` as a WHERE condition on ``table``'s ``owner`` and ``shared`` columns, with its parameters."""
        prefix = f"{table}." if table else ""
        if self.admin:
            return "1", []
        return f"({prefix}owner = ? OR {prefix}shared = 1)", [self.name]

    def check_write(self, owner: str, what: str) -> None:
        """Raise NotOwnerError unless this viewer owns the row (call it only on rows they may read)."""
        if not self.may_write(owner):
            raise NotOwnerError(f"{what} belongs to {owner}: only its owner can change, share or delete it")


LOCAL = Viewer(LOCAL_NAME)


def check_viewer(viewer: object) -> Viewer:
    """The store's guard: a Viewer, never a bare name (a name carries no administrator flag) or None."""
    if not isinstance(viewer, Viewer):
        raise TypeError(f"viewer must be a sinkfix.policy.ownership.Viewer, got {type(viewer).__name__}")
    return viewer
