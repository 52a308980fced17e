"""One ``db`` fixture over SQLite, MariaDB and PostgreSQL; each test gets a fresh schema.

The servers are the real ones on this machine (override with PE_TEST_MYSQL_URL and
PE_TEST_PG_URL). A server that does not answer is skipped on a developer's machine, with a
line saying so, and fails the run in CI (CI=true). PE_TEST_BACKENDS=sqlite,postgresql picks
backends on purpose.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, select, text

from pipeline_engine.cli import main as cli_main
from pipeline_engine.db import Database, normalize_url
from pipeline_engine.executor import process_running
from pipeline_engine.migrate import VERSION_TABLE
from pipeline_engine.models import Base, Pipeline

# A developer's shell must not leak into the tests.
for _var in [v for v in os.environ if v.startswith("PIPELINE_ENGINE_")]:
    os.environ.pop(_var)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SERVER_URLS = {
    "mariadb": os.environ.get("PE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
    "postgresql": os.environ.get("PE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
}
ALL_BACKENDS = ["sqlite", "mariadb", "postgresql"]
WANTED = [b.strip() for b in os.environ.get("PE_TEST_BACKENDS", ",".join(ALL_BACKENDS)).split(",") if b.strip()]
PID = os.getpid()
_counter = itertools.count()


def _admin_engine(backend: str):
    return create_engine(normalize_url(SERVER_URLS[backend]), isolation_level="AUTOCOMMIT",
                         pool_pre_ping=True)


class ServerBackend:
    """Creates a migrated template database once, then a fresh copy per test."""

    def __init__(self, name: str):
        self.name = name
        self.base_url = normalize_url(SERVER_URLS[name])
        self.admin = _admin_engine(name)
        self.error: str | None = None
        self.template = f"pe_tmpl_{PID}"
        self.ddl: list[str] = []
        try:
            with self.admin.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            self.error = f"{name} at {self.base_url.render_as_string(hide_password=True)} is not reachable: " \
                         f"{str(exc).splitlines()[0]}"
            return
        self._drop_stale()
        self._make_template()

    def url(self, database: str):
        return self.base_url.set(database=database)

    def _list(self, conn) -> list[str]:
        if self.name == "postgresql":
            rows = conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE 'pe\\_%'"))
        else:
            rows = conn.execute(text("SHOW DATABASES LIKE 'pe\\_%'"))
        return [r[0] for r in rows]

    def _drop(self, conn, database: str) -> None:
        if self.name == "postgresql":
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        else:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))

    def _drop_stale(self) -> None:
        # Databases left by an earlier run that was killed (its pid is gone).
        with self.admin.connect() as conn:
            for database in self._list(conn):
                parts = database.split("_")
                if len(parts) >= 3 and parts[2].isdigit() and not process_running(int(parts[2])):
                    self._drop(conn, database)

    def _make_template(self) -> None:
        with self.admin.connect() as conn:
            self._drop(conn, self.template)
            conn.execute(text(f"CREATE DATABASE {self.template}"))
        database = Database(self.url(self.template), auto_migrate=True)
        database.upgrade()
        if self.name == "mariadb":
            # MariaDB has no CREATE DATABASE ... TEMPLATE: replay the migrated DDL instead.
            with database.engine.connect() as conn:
                tables = [t.name for t in Base.metadata.sorted_tables] + [VERSION_TABLE]
                for table in tables:
                    self.ddl.append(conn.execute(text(f"SHOW CREATE TABLE `{table}`")).one()[1])
                version = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
                self.ddl.append(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('{version}')")
        database.dispose()

    def create(self, empty: bool = False) -> str:
        database = f"pe_t_{PID}_{next(_counter)}"
        with self.admin.connect() as conn:
            if empty:
                conn.execute(text(f"CREATE DATABASE {database}"))
            elif self.name == "postgresql":
                conn.execute(text(f'CREATE DATABASE "{database}" TEMPLATE "{self.template}"'))
            else:
                conn.execute(text(f"CREATE DATABASE `{database}`"))
                conn.execute(text(f"USE `{database}`"))
                for statement in self.ddl:
                    conn.execute(text(statement))
        return database

    def drop(self, database: str) -> None:
        with self.admin.connect() as conn:
            self._drop(conn, database)

    def close(self) -> None:
        if self.error is None:
            with self.admin.connect() as conn:
                self._drop(conn, self.template)
        self.admin.dispose()


_servers: dict[str, ServerBackend] = {}


def _server(name: str) -> ServerBackend:
    if name not in _servers:
        _servers[name] = ServerBackend(name)
    return _servers[name]


def pytest_report_header(config):
    return [f"backends: {', '.join(WANTED)} (CI={'yes' if IN_CI else 'no'}:"
            f" {'an unreachable server fails the run' if IN_CI else 'an unreachable server is skipped'})"]


def pytest_sessionfinish(session, exitstatus):
    for server in _servers.values():
        server.close()
    if hasattr(session.config, "workeroutput"):  # an xdist worker: its controller prints the summary
        session.config.workeroutput["pe_missing"] = [s.error for s in _servers.values() if s.error]


#: servers that xdist workers found missing
_missing_on_workers: set[str] = set()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    _missing_on_workers.update(getattr(node, "workeroutput", {}).get("pe_missing", []))


def pytest_terminal_summary(terminalreporter):
    missing = sorted({s.error for s in _servers.values() if s.error} | _missing_on_workers)
    for line in missing:
        terminalreporter.write_line(f"SKIPPED BACKEND: {line}", yellow=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("template") / "template.db")
    database = Database(f"sqlite:///{path}", auto_migrate=True)
    database.upgrade()
    with database.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.dispose()
    return path


def backend_url(request, backend: str, tmp_path, sqlite_template):
    """A URL to a fresh, migrated database of ``backend``; dropped after the test."""
    if backend not in WANTED:
        pytest.skip(f"{backend}: not in PE_TEST_BACKENDS")
    if backend == "sqlite":
        path = str(tmp_path / "pe.db")
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    server = _server(backend)
    if server.error:
        if IN_CI:
            pytest.fail(f"CI needs every backend: {server.error}", pytrace=False)
        pytest.skip(server.error)
    database = server.create()
    request.addfinalizer(lambda: server.drop(database))
    return server.url(database).render_as_string(hide_password=False)


def backend_url_empty(request, backend: str) -> str:
    """A URL to a new, empty database on a server backend (no schema at all)."""
    server = _server(backend)
    if server.error:
        if IN_CI:
            pytest.fail(f"CI needs every backend: {server.error}", pytrace=False)
        pytest.skip(server.error)
    database = server.create(empty=True)
    request.addfinalizer(lambda: server.drop(database))
    return server.url(database).render_as_string(hide_password=False)


@pytest.fixture(params=ALL_BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def db_url(request, backend, tmp_path, sqlite_template) -> str:
    return backend_url(request, backend, tmp_path, sqlite_template)


@pytest.fixture
def db(db_url) -> Database:
    database = Database(db_url, auto_migrate=False)
    database.key  # noqa: B018 -- used once, as any database is before a test's commands: its installation id is made
    yield database
    database.dispose()


#: columns a live process renews on its own, whatever a request does: a worker's heartbeat
#: (a server's worker beats every second, so a snapshot around a refused request would differ)
_LIVENESS = {("worker", "heartbeat_at")}


def snapshot(database: Database) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order: equal snapshots mean nothing changed
    (but for the heartbeats of live workers, ``_LIVENESS``)."""
    out = {}
    with database.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if (table.name, c.name) not in _LIVENESS]
            rows = conn.execute(select(*columns).order_by(*table.primary_key.columns)).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


@pytest.fixture
def unchanged(db):
    """``with unchanged(): ...`` asserts the block leaves the database exactly as it was."""
    from contextlib import contextmanager

    @contextmanager
    def check():
        before = snapshot(db)
        yield
        assert snapshot(db) == before

    return check


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


@pytest.fixture
def cli(db_url, capsys):
    """Run the CLI in this process on the test's database: returns (exit code, stdout, stderr)."""
    def run(*args):
        with pytest.raises(SystemExit) as exc:
            cli_main(["--db", db_url, *args])
        out, err = capsys.readouterr()
        return exc.value.code, out, err
    return run


@pytest.fixture
def example():
    return lambda name: os.path.join(EXAMPLES, name)


def run_tracks(database: Database, run_id: int) -> dict:
    """A run's Track rows by vertex name."""
    from pipeline_engine import store

    with database.transaction(write=False) as s:
        return {v.name: t for t, v in store.run_tracks(s, run_id)}


@pytest.fixture(autouse=True)
def log_dir(tmp_path, monkeypatch) -> str:
    """Every test's runs write their log files under its own temporary directory (never the
    user's ~/.local/state); spawned CLI processes inherit it."""
    path = str(tmp_path / "logs")
    monkeypatch.setenv("PIPELINE_ENGINE_LOGS", path)
    return path


# --- worker processes -----------------------------------------------------------------------

def worker(db_url: str, log, *args: str, host: str | None = None, env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, **({"PIPELINE_ENGINE_HOST": host} if host else {}), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, "worker", *args],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pause(proc: subprocess.Popen, db: Database) -> None:
    """SIGSTOP ``proc``; on SQLite only at a moment it does not hold the write lock. A process
    frozen while it holds SQLite's write lock stops every writer until it wakes (README: "SQLite
    is for one machine you watch"), which is not what a test of a paused worker is about."""
    import sqlite3

    while True:
        proc.send_signal(signal.SIGSTOP)
        if db.dialect != "sqlite":
            return
        probe = sqlite3.connect(db.path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # frozen inside a write: let it finish, and try again
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.02)
        finally:
            probe.close()


def pipeline_state(db, run_id: int) -> str:
    with db.transaction(write=False) as s:
        return s.get(Pipeline, run_id).state


def finished(db, run_id: int):
    state = pipeline_state(db, run_id)
    return state if state != "running" else None


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# --- API servers ------------------------------------------------------------------------------

class Server:
    """A real `pipeline-engine serve` process on a free loopback port."""

    def __init__(self, db_url: str, log_path, *args: str, env: dict | None = None, timeout: float = 30.0):
        self.log_path = str(log_path)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, "serve", "--port", "0",
                                      *args], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        found = wait_for(lambda: self._serving() or self._died(), timeout, "the server to start")
        if found == "died":
            raise AssertionError(f"serve exited with {self.proc.returncode}: {self.text()}")
        self.url = found
        #: the admin token the server made at its start (None when a token existed already)
        self.first_token = next((w for w in self.text().split() if w.startswith("pe_")), None)

    def text(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def _died(self):
        return "died" if self.proc.poll() is not None else None

    def _serving(self):
        for line in self.text().splitlines():
            if line.startswith("serving http://"):
                return line.split()[1].removesuffix("/api/v1")
        return None

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return self.proc.returncode


# --- stopping a database server (tests marked serial) --------------------------------------------

@contextlib.contextmanager
def served(request, tmp, sqlite_template, *args: str, prefix: str, roles=("viewer", "operator", "editor"),
           env: dict | None = None):
    """A fresh database of ``request.param``'s backend served by a real `serve` (``args``, logs
    under ``tmp``): yields (server, database, role -> token), the admin's the server's first,
    each other one named ``{prefix}-{role}`` (the actor its calls are audited as)."""
    url = backend_url(request, request.param, tmp, sqlite_template)
    db = Database(url, auto_migrate=False)
    server = Server(url, tmp / "serve.log", *args, env={"PIPELINE_ENGINE_LOGS": str(tmp / "logs"), **(env or {})})
    try:
        tokens = {"admin": server.first_token}
        from pipeline_engine import service

        for role in roles:
            tokens[role] = service.create_token(db, f"{prefix}-{role}", role)[1]
        yield server, db, tokens
    finally:
        server.stop()
        db.dispose()


_names = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test of this process uses."""
    return f"{prefix}{next(_names)}"


def answers(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


_PG_VERSION = (os.listdir("/etc/postgresql") or ["15"])[0] if os.path.isdir("/etc/postgresql") else "15"
SERVER_PORTS = {"mariadb": 3306, "postgresql": 5432}
_SERVER_CONTROL = {
    "mariadb": (["mariadb-admin", "-uroot", "-h127.0.0.1", "shutdown"],
                ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"]),
    "postgresql": (["pg_ctlcluster", "--skip-systemctl-redirect", _PG_VERSION, "main", "stop", "-m", "fast"],
                   ["pg_ctlcluster", "--skip-systemctl-redirect", _PG_VERSION, "main", "start"]),
}


def _server_process_running(backend: str) -> bool:
    name = "mariadbd" if backend == "mariadb" else "postgres"
    return subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0


@contextlib.contextmanager
def database_server_stopped(backend: str):
    """Stop the machine's ``backend`` server for the block; it is started again afterwards,
    whatever happens in the block (the test that uses it is marked ``serial``). Stopped means
    its process is gone, not only its port closed: a start while the old process still shuts
    down does nothing (start-stop-daemon --oknodo sees it running), and the server stayed down."""
    port = SERVER_PORTS[backend]
    stop_server, start_server = _SERVER_CONTROL[backend]
    try:
        subprocess.run(stop_server, check=True, capture_output=True, timeout=60)
        wait_for(lambda: not answers(port), 30, f"{backend} to stop")
        wait_for(lambda: not _server_process_running(backend), 60, f"{backend}'s process to end")
        yield
    finally:
        deadline = time.monotonic() + 120
        while not answers(port):  # started again until it answers, however its stop went
            if time.monotonic() > deadline:
                raise AssertionError(f"{backend} did not start again on port {port}")
            if not _server_process_running(backend):
                subprocess.run(start_server, capture_output=True, timeout=60)
            time.sleep(0.5)
