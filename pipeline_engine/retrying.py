"""Transactions that wait out database faults, for whatever keeps talking to the database while
work goes on without it (a worker's dispatcher; a scheduler, a server later).

A lost connection, a deadlock, a serialization failure, a lock wait timeout, SQLite busy: the
transaction is retried with backoff on a new connection. A fault retrying cannot fix (disk
full, read-only, the file deleted) raises DatabaseUnusableError at once."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from pipeline_engine.db import Database, _first_line
from pipeline_engine.errors import DatabaseError, DatabaseUnusableError

log = logging.getLogger("pipeline_engine.retrying")

_MAX_BACKOFF = 5.0
_FIRST_BACKOFF = 0.05
_STEP = 0.05  # seconds between looks at ``give_up`` and calls of ``between`` in a backoff

R = TypeVar("R")


class GaveUp(DatabaseError):
    """The caller stopped waiting (``give_up``) while the database still fails."""


def retryable(exc: BaseException | None) -> bool:
    """A fault worth waiting out: the connection went away, a deadlock, a serialization
    failure, a lock wait timeout, SQLite busy."""
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))
    return isinstance(exc, (ConnectionError, OSError))


class Transactor:
    """One connection of its own, and transactions on it that wait out faults.

    ``give_up()`` is asked before each wait: True raises GaveUp instead. ``between()`` is called
    during the waits (a worker renews its lease there). ``idle_limit`` asks the server to end a
    session left idle inside a transaction that long. ``faulted`` is set when a transaction
    failed and was retried (its commit may have landed unacknowledged); the caller clears it."""

    def __init__(self, db: Database, *, name: str = "pipeline-engine", idle_limit: float | None = None,
                 give_up: Callable[[], bool] = lambda: False, between: Callable[[], None] = lambda: None):
        self.db, self.name, self.idle_limit = db, name, idle_limit
        self.give_up, self.between = give_up, between
        self.faulted = False
        #: how many times a transaction was retried after a fault (for monitoring)
        self.retried = 0
        self._conn: Connection | None = None

    def run(self, fn: Callable[[Connection], R], attempts: int | None = None) -> R:
        """``fn(connection)`` in one transaction, committed; retried (forever unless
        ``attempts``) while the fault is one worth waiting out."""
        delay, tried = _FIRST_BACKOFF, 0
        while True:
            tried += 1
            try:
                if self._conn is None:
                    self._conn = self.db.open_connection()
                    if self.idle_limit is not None:
                        self.db.limit_idle_transactions(self._conn, self.idle_limit)
                with self._conn.begin():
                    return fn(self._conn)
            except (sa_exc.DBAPIError, DatabaseError, OSError) as exc:
                if isinstance(exc, DatabaseUnusableError):
                    raise
                cause = exc.__cause__ if isinstance(exc, DatabaseError) else exc
                unusable = self.db.unusable(cause)
                if unusable is not None:
                    raise unusable from exc
                if not retryable(cause) or (attempts is not None and tried >= attempts):
                    if isinstance(exc, DatabaseError):
                        raise
                    raise DatabaseError(f"database error on {self.db.safe_url}: {exc}") from exc
                if self.give_up():
                    raise GaveUp(f"database error on {self.db.safe_url}: {_first_line(cause)}") from exc
                log.warning("%s: database error (%s); retrying in %.2f s", self.name, _first_line(cause), delay)
                self.drop()
                self.faulted = True
                self.retried += 1
                self._pause(delay)
                delay = min(delay * 2, _MAX_BACKOFF)

    def _pause(self, seconds: float) -> None:
        """Sleep between retries, cut short once ``give_up`` says so."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0 and not self.give_up():
            self.between()
            time.sleep(min(left, _STEP))

    def drop(self) -> None:
        """Forget the connection (a broken one, or one in doubt): the next transaction opens one."""
        try:
            if self._conn is not None:
                self._conn.invalidate()
                self._conn.close()
        except Exception:  # noqa: BLE001 -- the connection is gone either way
            pass
        self._conn = None

    def close(self) -> None:
        """Give the connection back to the pool, without this transactor's idle limit."""
        if self._conn is None:
            return
        if self.idle_limit is not None:
            try:
                self.db.limit_idle_transactions(self._conn, None)
            except Exception:  # noqa: BLE001 -- a broken connection is discarded by the pool
                self._conn.invalidate()
        self._conn.close()
        self._conn = None
