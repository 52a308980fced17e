"""The explicit database handle: engine, transactions, and the schema's migrations.

There is no global session: callers hold a ``Database`` and every service call opens
one transaction on it.
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event, exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from pipeline_engine.errors import DatabaseError, SchemaVersionError

# The driver each bare scheme means here: PyMySQL for MySQL/MariaDB, psycopg 3 for PostgreSQL.
_DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql",
            "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``, choosing the drivers pipeline_engine ships with for bare schemes."""
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise DatabaseError(f"not a database URL: {url!r} ({exc})") from None
    if parsed.drivername in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _sqlite_pragmas(dbapi_connection, _record):
    # We issue BEGIN ourselves (see _sqlite_begin); the driver's implicit one is off.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _sqlite_private(dialect, _record, cargs, cparams):
    # A new database file is readable by its owner only; SQLite gives its -wal and -shm files the
    # same mode. The umask is the process's: it is set only while the file is created (before any
    # vertex process is spawned, which would inherit it).
    path = cargs[0] if cargs else cparams.get("database", "")
    if not path or path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return None
    old = os.umask(0o077)
    try:
        return dialect.connect(*cargs, **cparams)
    finally:
        os.umask(old)


def _sqlite_begin(conn: Connection):
    # A writer takes the write lock up front, so two writers serialise instead of one
    # failing with SQLITE_BUSY after it has read state the other is about to change.
    write = conn.get_execution_options().get("pe_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """A handle to one pipeline_engine database. Thread-safe; share one per process."""

    def __init__(self, url: str | URL, *, auto_migrate: bool | None = None, echo: bool = False):
        self.url = normalize_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect not in ("sqlite", "mysql", "mariadb", "postgresql"):
            raise DatabaseError(f"unsupported database {self.dialect!r}: use SQLite, MySQL/MariaDB or PostgreSQL")
        kwargs: dict = {"echo": echo}
        if self.dialect == "sqlite":
            database = self.url.database or ""
            if database in ("", ":memory:"):
                kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
            else:
                os.makedirs(os.path.dirname(os.path.abspath(database)), mode=0o700, exist_ok=True)
        else:
            kwargs.update(pool_pre_ping=True, pool_recycle=3600)
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except ModuleNotFoundError as exc:
            raise DatabaseError(f"the driver for {self.safe_url} is not installed ({exc.name});"
                                " pip install 'pipeline-engine[postgres]' for PostgreSQL") from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "do_connect", _sqlite_private)
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        #: the embedded SQLite default migrates itself on first use; servers need `db upgrade`
        self.auto_migrate = self.dialect == "sqlite" if auto_migrate is None else auto_migrate
        self._schema_ok = False
        self._schema_lock = threading.Lock()

    @property
    def safe_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def key(self) -> str:
        """A short name for this database, stable across processes: it keeps the log files of
        different databases (whose run ids repeat) apart."""
        digest = hashlib.sha1(self.safe_url.encode("utf-8")).hexdigest()[:10]
        return f"{self.dialect}-{digest}"

    @property
    def is_mysql(self) -> bool:
        return self.dialect in ("mysql", "mariadb")

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.safe_url!r})"

    # --- transactions -----------------------------------------------------------

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back (nothing written)
        if it raises. Driver errors come out as DatabaseError."""
        self.ensure_schema()
        with self._connect(write) as conn:
            with conn.begin():
                session = Session(bind=conn, expire_on_commit=False, autoflush=True)
                try:
                    yield session
                    session.flush()
                finally:
                    session.close()

    @contextmanager
    def connection(self, write: bool = True) -> Iterator[Connection]:
        """A connection held across many short transactions (``with conn.begin(): ...``), for
        a loop that writes often: no session, no pool checkout per step. Driver errors come
        out as DatabaseError."""
        self.ensure_schema()
        with self._connect(write) as conn:
            yield conn

    def limit_idle_transactions(self, conn: Connection, seconds: float | None) -> None:
        """Have the server end ``conn``'s session when it sits inside a transaction, waiting for
        the client, longer than ``seconds`` (None: no limit). A worker that freezes (SIGSTOP, a
        suspended VM) in the middle of a transaction would otherwise keep its row locks, and
        MariaDB's locking reads lock more rows than they return: the other workers could not take
        its tracks back. The session is ended, its transaction rolled back; the worker, if it
        wakes, reconnects and retries. SQLite has no server to do this, nor has MySQL (only
        MariaDB): there the limit is not set."""
        if self.is_mysql and getattr(conn.dialect, "is_mariadb", False):
            conn.exec_driver_sql(f"SET SESSION idle_transaction_timeout = {math.ceil(seconds) if seconds else 0}")
        elif self.dialect == "postgresql":
            conn.exec_driver_sql(f"SET idle_in_transaction_session_timeout = {int(seconds * 1000) if seconds else 0}")
        else:
            return
        conn.commit()

    def open_connection(self) -> Connection:
        """A new writer's connection that the caller manages itself (a long-running loop that
        reconnects after a database fault). Driver errors are not wrapped. On MySQL/MariaDB it
        reads committed rows (as PostgreSQL does by default): a statement that follows a lock
        sees what the lock's previous holder committed, not a snapshot from the transaction's
        first read (the pools' count of running tracks relies on it)."""
        self.ensure_schema()
        conn = self.engine.connect().execution_options(pe_write=True)
        if self.is_mysql:
            conn = conn.execution_options(isolation_level="READ COMMITTED")
        return conn

    @contextmanager
    def _connect(self, write: bool) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                if write:
                    conn.execution_options(pe_write=True)
                yield conn
        except sa_exc.IntegrityError:
            raise  # the service turns these into messages about the graph or vertex
        except sa_exc.DBAPIError as exc:
            raise DatabaseError(f"database error on {self.safe_url}: {_first_line(exc.orig)}") from exc

    # --- schema -----------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Make sure the schema is at the newest migration: upgrade the embedded SQLite
        default, or raise SchemaVersionError for a server that needs `db upgrade`."""
        if self._schema_ok:
            return
        with self._schema_lock:
            if self._schema_ok:
                return
            from pipeline_engine import migrate

            with self._connect(write=True) as conn:
                with conn.begin():
                    current = migrate.current_revision(conn)
                    head = migrate.head_revision()
                    if current != head:
                        if not self.auto_migrate:
                            raise SchemaVersionError(
                                f"database {self.safe_url} is at schema {current or 'none'}, this version"
                                f" needs {head}: run `pipeline-engine --db URL db upgrade`")
                        migrate.upgrade(conn)
            self._schema_ok = True

    def upgrade(self) -> tuple[str | None, str]:
        """Apply every pending migration; returns (revision before, revision after)."""
        from pipeline_engine import migrate

        with self._connect(write=True) as conn:
            with conn.begin():
                before = migrate.current_revision(conn)
                migrate.upgrade(conn)
                after = migrate.current_revision(conn)
        self._schema_ok = True
        return before, after


def _first_line(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else ""
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def connect(url: str | URL | None = None, **kwargs) -> Database:
    """Open a handle on ``url`` (default: ``PIPELINE_ENGINE_DB``, else the embedded SQLite file)."""
    if url is None:
        from pipeline_engine.settings import Settings

        url = Settings.from_env().db
    return Database(url, **kwargs)
