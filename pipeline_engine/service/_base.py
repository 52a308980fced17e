"""What every use case shares: one write transaction whose integrity errors read as a
concurrent edit, and the checks of free text and of a row's size before anything is written."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from pipeline_engine import actors, store
from pipeline_engine.db import Database, _first_line
from pipeline_engine.errors import DatabaseError, GraphError
from pipeline_engine.models import storable

log = logging.getLogger("pipeline_engine.service")


@contextmanager
def _write(db: Database) -> Iterator[Session]:
    try:
        with db.transaction(write=True) as s:
            yield s
    except sa_exc.IntegrityError as exc:
        # Pre-checks give the precise messages; this is a concurrent writer winning a race.
        raise GraphError(f"the database refused the change (a concurrent edit?): {_first_line(exc.orig)}") from exc


#: rows one transaction inserts into a table past which its statistics are refreshed
BULK_ROWS = 10_000


def _after_bulk(db: Database, rows: int, *tables: type) -> None:
    """After a committed transaction inserted ``rows`` rows into ``tables`` (model classes):
    past BULK_ROWS, refresh the planner's statistics of those tables (PostgreSQL; see
    ``store.refresh_statistics``), in a transaction of its own. It is upkeep, not part of the
    change, which has been committed: if it cannot be done now, autovacuum does it later."""
    if rows < BULK_ROWS or db.dialect != "postgresql":
        return
    try:
        with db.transaction(write=True) as s:
            store.refresh_statistics(s, tables)
    except DatabaseError as exc:
        log.info("statistics of %s not refreshed now (autovacuum will): %s",
                 ", ".join(t.__tablename__ for t in tables), exc)


def _text(where: str, what: str, value: str) -> None:
    """Refuse free text no database stores as written: NUL (nor can bash run it), or lone
    surrogates (bytes that were not UTF-8, as Python keeps them)."""
    if "\x00" in value:
        raise GraphError(f"{where}: {what} contains a NUL character")
    if storable(value) != value:
        raise GraphError(f"{where}: {what} is not valid UTF-8 text")


def _fit(s: Session, rows: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse rows (by what they are, e.g. "vertex 'a'") that the server would not take in one
    statement, naming its limit, before anything is written."""
    limit = store.statement_limit(s)
    if limit is None:
        return
    problems = [f"{what} takes about {size} bytes in one statement, over the server's max_allowed_packet of"
                f" {limit} bytes: make its script, description or inputs shorter (or raise max_allowed_packet)"
                for what, size in ((w, store.row_bytes(r)) for w, r in rows.items()) if size > limit]
    if problems:
        raise GraphError("\n".join(problems))


def _audit(s: Session, action: str, target: object, detail: str = "") -> None:
    """Record, in the caller's transaction, that the current actor did ``action`` to
    ``target`` (never a secret value in ``detail``)."""
    store.add_audit(s, actors.current(), action, str(target)[:255], detail)
