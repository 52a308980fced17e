"""The explicit database handle: engine, transactions, and the schema's migrations.

There is no global session: callers hold a ``Database`` and every service call opens
one transaction on it.
"""
from __future__ import annotations

import math
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from sqlalchemy import create_engine, event, exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from pipeline_engine.errors import (DatabaseError, DatabaseMissingError, DatabaseUnusableError, DatabaseURLError,
                                     SchemaVersionError)

# The driver each bare scheme means here: PyMySQL for MySQL/MariaDB, psycopg 3 for PostgreSQL.
_DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql",
            "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
# the backend named in a database's key: mysql:// and mariadb:// reach the same servers
_FAMILY = {"mariadb": "mysql"}


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


def _sqlite_begin(conn: Connection):
    # A writer takes the write lock up front, so two writers serialise instead of one
    # failing with SQLITE_BUSY after it has read state the other is about to change.
    write = conn.get_execution_options().get("pe_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """A handle to one pipeline_engine database. Thread-safe; share one per process.

    A SQLite file that does not exist is created only with ``create`` (the CLI passes it for
    the embedded default and ``db upgrade``); else DatabaseMissingError. Once open, connections
    never create the file again: one deleted while in use is an error, not a new empty database."""

    def __init__(self, url: str | URL, *, auto_migrate: bool | None = None, echo: bool = False,
                 create: bool = True):
        self.url = normalize_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect not in ("sqlite", "mysql", "mariadb", "postgresql"):
            raise DatabaseError(f"unsupported database {self.dialect!r}: use SQLite, MySQL/MariaDB or PostgreSQL")
        if self.dialect in ("mysql", "mariadb") and not self.url.database:
            raise DatabaseURLError(f"database URL {self.safe_url} names no database: put its name after the"
                                " last '/' (mysql://user@host:3306/jobs)")
        kwargs: dict = {"echo": echo}
        #: the SQLite file, and its (device, inode) when opened: a file deleted or replaced while
        #: in use is noticed (writes to an unlinked file succeed, into nothing)
        self.path: str | None = None
        self._identity: tuple[int, int] | None = None
        engine_url = self.url
        if self.dialect == "sqlite":
            database = self.url.database or ""
            if database in ("", ":memory:"):
                kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
            else:
                self.path = os.path.abspath(database)
                self._open_file(create)
                # mode=rw: a connection never creates the file (a deleted one stays an error)
                engine_url = self.url.set(database="file:" + quote(self.path)).update_query_dict(
                    {"uri": "true", "mode": "rw"})
        else:
            kwargs.update(pool_pre_ping=True, pool_recycle=3600)
        try:
            self.engine: Engine = create_engine(engine_url, **kwargs)
        except ModuleNotFoundError as exc:
            raise DatabaseError(f"the driver for {self.safe_url} is not installed ({exc.name});"
                                " pip install 'pipeline-engine[postgres]' for PostgreSQL") from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        #: the embedded SQLite default migrates itself on first use; servers need `db upgrade`
        self.auto_migrate = self.dialect == "sqlite" if auto_migrate is None else auto_migrate
        self._schema_ok = False
        #: the installation id, read (or made) once, on first use
        self._installation: str | None = None
        self._schema_lock = threading.Lock()

    def _open_file(self, create: bool) -> None:
        if not os.path.exists(self.path):
            if not create:
                raise DatabaseMissingError(f"database {self.safe_url} does not exist: create it with"
                                           f" `pipeline-engine --db {self.safe_url} db upgrade`")
            try:
                os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
                # readable by its owner only; SQLite gives its -wal and -shm files the same mode
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise DatabaseError(f"database {self.safe_url}: cannot create it: {exc.strerror}") from None
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)

    def check_file(self) -> None:
        """Raise DatabaseUnusableError when the SQLite file was deleted or replaced since it was
        opened (a no-op for the servers)."""
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise DatabaseUnusableError(f"database {self.safe_url}: its file was deleted while in use") from None
        except OSError:
            return  # cannot tell; the next statement will say what is wrong
        if (st.st_dev, st.st_ino) != self._identity:
            raise DatabaseUnusableError(f"database {self.safe_url}: its file was replaced by another while in use")

    def unusable(self, exc: BaseException | None) -> DatabaseUnusableError | None:
        """The error to stop with when ``exc`` (a driver error, wrapped or not) is one that
        retrying cannot fix: disk full, a read-only database, its file or database gone. None
        for anything else (a lost connection, a deadlock, a lock wait: worth retrying)."""
        try:
            self.check_file()
        except DatabaseUnusableError as gone:
            return gone
        orig = getattr(exc, "orig", None) or exc
        why = _unfixable(orig)
        if why is not None and self.path is not None and not all(
                os.access(p, os.W_OK) for p in (self.path, os.path.dirname(self.path))):
            why = "it is read-only: its file or its directory cannot be written"  # SQLite says "cannot open"
        return None if why is None else DatabaseUnusableError(f"database {self.safe_url}: {why} ({_first_line(orig)})")

    @property
    def safe_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def installation_id(self) -> str:
        """The id the database records for itself (made by its first user; see ``ensure_schema``)."""
        self.ensure_schema()
        return self._installation

    @property
    def key(self) -> str:
        """A short name for this database, stable across processes and the same through every URL
        that reaches it (``localhost`` or ``127.0.0.1``, a relative or absolute SQLite path):
        ``<backend>-<installation id>``. It marks the processes of its attempts (leftovers are
        found by it) and names its logs directory (run ids repeat across databases)."""
        return f"{_FAMILY.get(self.dialect, self.dialect)}-{self.installation_id}"

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
            raise self.unusable(exc) or DatabaseError(
                f"database error on {self.safe_url}: {_first_line(exc.orig)}") from exc

    # --- schema -----------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Make sure the schema is at the newest migration: upgrade the embedded SQLite
        default, or raise SchemaVersionError for a server that needs `db upgrade`. Then read
        the installation id, once, before any caller's transaction holds a lock it would wait on."""
        if self._schema_ok and self._installation is not None:
            return
        with self._schema_lock:
            if not self._schema_ok:
                self._check_schema()
                self._schema_ok = True
            if self._installation is None:
                self._installation = self._read_installation()

    def _check_schema(self) -> None:
        from pipeline_engine import migrate

        with self._connect(write=True) as conn, self._migrating(conn):
            with conn.begin():
                current = migrate.current_revision(conn)
                head = migrate.head_revision()
                if current != head:
                    if not self.auto_migrate:
                        raise SchemaVersionError(
                            f"database {self.safe_url} is at schema {current or 'none'}, this version"
                            f" needs {head}: run `pipeline-engine --db URL db upgrade`")
                    migrate.upgrade(conn)
                    self._check_foreign_keys(conn)

    def _read_installation(self) -> str:
        """The installation id, made by the database's first user. Race-free on every backend:
        the table's primary key is a constant, so it admits one row; of first users creating it
        at once one commits, the others get an IntegrityError (PostgreSQL and InnoDB make them
        wait for the winner's commit; SQLite writers take turns) and read the winner's id. Each
        step is a transaction of its own, so the read after a lost race sees the winner's
        commit under MySQL's REPEATABLE READ too."""
        from pipeline_engine import store

        tries = 5
        for attempt in range(tries):
            with self._connect(write=False) as conn, conn.begin():
                found = store.installation_id(conn)
            if found is not None:
                return found
            mine = uuid.uuid4().hex
            try:
                with self._connect(write=True) as conn, conn.begin():
                    store.create_installation(conn, mine)
                return mine
            except sa_exc.IntegrityError:
                continue  # another process made it first: read its id
            except DatabaseError:
                # InnoDB: creators that waited on one that rolled back can deadlock; one wins
                if attempt == tries - 1:
                    raise
        raise DatabaseError(f"database {self.safe_url}: cannot read its installation id")

    def upgrade(self) -> tuple[str | None, str]:
        """Apply every pending migration; returns (revision before, revision after)."""
        from pipeline_engine import migrate

        with self._connect(write=True) as conn, self._migrating(conn):
            with conn.begin():
                before = migrate.current_revision(conn)
                migrate.upgrade(conn)
                self._check_foreign_keys(conn)
                after = migrate.current_revision(conn)
        self._schema_ok = True
        return before, after

    @contextmanager
    def _migrating(self, conn: Connection) -> Iterator[None]:
        """SQLite rebuilds a table by copying it and dropping the old one, which with foreign
        keys on deletes (by cascade) the rows that refer to it: keep them off while migrating.
        The pragma works only outside a transaction, so it goes on the driver's connection."""
        if self.dialect != "sqlite":
            yield
            return
        raw = conn.connection.dbapi_connection
        raw.execute("PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            raw.execute("PRAGMA foreign_keys = ON")

    def _check_foreign_keys(self, conn: Connection) -> None:
        """Before a migration commits on SQLite: every row still refers to a row that exists."""
        if self.dialect == "sqlite":
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise DatabaseError(f"migrating {self.safe_url} would leave {len(broken)} row(s) referring to rows"
                                    f" that do not exist (first: table {broken[0][0]}, row {broken[0][1]});"
                                    " nothing was changed")


# SQLite primary result codes that retrying cannot fix
_SQLITE_UNFIXABLE = {13: "the disk is full", 8: "it is read-only", 14: "its file cannot be opened",
                     10: "a disk I/O error", 11: "it is corrupt", 26: "it is not a database"}
_SQLITE_READONLY_DBMOVED = 1032
# PostgreSQL SQLSTATEs and MySQL/MariaDB error numbers of the same kinds
_PG_UNFIXABLE = {"53100": "the disk is full", "25006": "it is read-only", "3D000": "the database does not exist",
                 "57P04": "the database was dropped"}
_MYSQL_UNFIXABLE = {1021: "the disk is full", 1114: "the disk is full (a table is full)",
                    1290: "it is read-only", 1792: "it is read-only", 1836: "it is read-only",
                    1049: "the database does not exist"}


def _unfixable(orig: BaseException) -> str | None:
    """What is wrong, for a driver error that waiting will not cure; else None."""
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        if code == _SQLITE_READONLY_DBMOVED:
            return "its file was moved or deleted"
        return _SQLITE_UNFIXABLE.get(code & 0xFF)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return _PG_UNFIXABLE.get(sqlstate)
    args = getattr(orig, "args", ())
    if type(orig).__module__.startswith("pymysql") and args and isinstance(args[0], int):
        if args[0] == 1030 and "28" in str(args[1:]):  # "Got error 28 from storage engine": ENOSPC
            return "the disk is full"
        return _MYSQL_UNFIXABLE.get(args[0])
    return None


def _first_line(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else ""
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def connect(url: str | URL | None = None, **kwargs) -> Database:
    """Open a handle on ``url`` (default: ``PIPELINE_ENGINE_DB``, else the embedded SQLite file).
    A SQLite file that does not exist is created unless ``create=False``."""
    if url is None:
        from pipeline_engine.settings import Settings

        url = Settings.from_env().db
    return Database(url, **kwargs)
