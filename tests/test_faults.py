"""Database faults that waiting does not cure — a full disk, a read-only database, its file
deleted — stop `run` and `worker` cleanly: one line naming the database and the cause, exit 3,
no process of the run left, the run resumable. A signal while a transient fault is being
retried is honoured within the grace. Real processes, real file systems (tmpfs and bind mounts,
so root), real servers (their sessions made read-only; a TCP relay cut in front of them).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager

import pytest
from conftest import ROOT, SERVER_URLS, _admin_engine, finished, run_tracks, stop, wait_for, worker
from sqlalchemy import text
from sqlalchemy.engine import make_url
from test_durability import processes_of

from pipeline_engine import service
from pipeline_engine.db import Database

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root only)")
CLI = [sys.executable, "-m", "pipeline_engine"]


@contextmanager
def mounted(path, *args: str):
    """``mount ARGS path`` for the block; unmounted after it, whatever happens."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", *args, str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def once_then(tmp_path, name: str, first: str, then: str = "true") -> str:
    """A script that does ``first`` on its first attempt and ``then`` on any later one."""
    flag = tmp_path / f"{name}.again"
    return f"if [ -e {flag} ]; then {then}; else touch {flag}; {first}; fi"


def copy_db(db_url: str, directory) -> str:
    """The test's SQLite database copied into ``directory``; returns its URL."""
    src = make_url(db_url).database
    dst = os.path.join(str(directory), "pe.db")
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read())
    return f"sqlite:///{dst}"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("pipeline-engine: error:")]


@needs_root
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_full_disk_mid_run_stops_the_run_with_one_line_and_resume_finishes_it(backend, db_url, tmp_path):
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=1m", "tmpfs") as small:
        url = copy_db(db_url, small)
        db = Database(url)
        # Given a run whose first vertex prints 100 KB and fills the disk, while another one runs long
        fill = f"head -c 100000 /dev/urandom | base64; cat /dev/zero > {small}/filler 2>/dev/null"
        vertices = [{"name": "fill", "script": once_then(tmp_path, "fill", fill + "; sleep 0.5"), "retries": 1},
                    {"name": "long", "script": once_then(tmp_path, "long", "sleep 60"), "retries": 1}]
        service.import_graph(db, {"name": "full", "vertices": vertices}, seal=True)
        # When it runs
        proc = subprocess.run([*CLI, "--db", url, "run", "full", "--workers", "2"], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        # Then it stops at once, saying the database's disk is full and how to go on; nothing runs on
        run_id = int(proc.stdout.split()[1])
        assert proc.returncode == 3, proc.stderr
        assert error_lines(proc.stderr) == [
            f"pipeline-engine: error: database {url}: the disk is full (database or disk is full); stopped:"
            f" `pipeline-engine resume {run_id}` continues the run once that is fixed"]
        assert wait_for(lambda: not processes_of(db.key), 10, "the run's processes to end")
        # And once there is room again, `resume` finishes the run
        os.unlink(small / "filler")
        resumed = subprocess.run([*CLI, "--db", url, "resume", str(run_id)], cwd=ROOT, capture_output=True,
                                 text=True, timeout=60)
        assert resumed.returncode == 0, resumed.stderr
        tracks = run_tracks(db, run_id)
        assert {v: (t.state, t.attempt) for v, t in tracks.items()} == {"fill": ("succeeded", 2),
                                                                       "long": ("succeeded", 2)}
        db.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_database_file_deleted_under_a_worker_stops_it(backend, db, db_url, tmp_path):
    service.import_graph(db, {"name": "one", "vertices": [{"name": "v", "script": "sleep 60"}]}, seal=True)
    service.start_run(db, "one", detach=True)
    db.dispose()
    log = tmp_path / "w.log"
    w = worker(db_url, open(log, "w"), "--poll", "0.05")
    try:
        wait_for(lambda: processes_of(db.key), 20, "the vertex to start")
        # When the database file is deleted while the worker uses it
        path = make_url(db_url).database
        os.unlink(path)
        # Then the worker notices within a heartbeat, ends the vertex and exits 3 saying so
        assert w.wait(timeout=15) == 3
    finally:
        stop(w)
    assert error_lines(log.read_text()) == [
        f"pipeline-engine: error: database {db_url}: its file was deleted while in use; stopped: its tracks go back"
        " to pending when its lease runs out once that is fixed"]
    assert wait_for(lambda: not processes_of(db.key), 10, "the vertex's processes to end")
    assert not os.path.exists(path)  # and no new, empty database was made in its place


def _read_only_sessions(backend: str, db_url: str, on: bool) -> None:
    """From now on, new sessions of the test's server database are read-only (or writable again);
    sessions open now are ended, so that the worker's reconnect gets one."""
    name = make_url(db_url).database
    admin = _admin_engine(backend)
    try:
        with admin.connect() as conn:
            if backend == "postgresql":
                value = "on" if on else "off"
                conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}'))
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                  " WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
            else:
                conn.execute(text(f"UPDATE `{name}`.pe_test_read_only SET flag = {int(on)}"))
                for (pid,) in conn.execute(text("SELECT id FROM information_schema.processlist WHERE db = :name"),
                                           {"name": name}).all():
                    conn.execute(text(f"KILL CONNECTION {int(pid)}"))
    finally:
        admin.dispose()


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_a_server_database_that_turns_read_only_mid_run_stops_the_worker(backend, db, db_url, tmp_path):
    url = db_url
    if backend == "mariadb":  # MariaDB has no read-only database: each new session of the worker reads a flag
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE pe_test_read_only (flag INT NOT NULL)"))
            conn.execute(text("INSERT INTO pe_test_read_only VALUES (0)"))
        url = make_url(db_url).update_query_dict(
            {"init_command": "SET SESSION tx_read_only = (SELECT flag FROM pe_test_read_only)"}
        ).render_as_string(hide_password=False)
    key = db.key  # the worker's processes carry it, whatever URL it reaches the database by
    script = once_then(tmp_path, "v", "sleep 60")
    service.import_graph(db, {"name": "one", "vertices": [{"name": "v", "script": script, "retries": 1}]}, seal=True)
    run = service.start_run(db, "one", detach=True)
    log = tmp_path / "w.log"
    w = worker(url, open(log, "w"), "--poll", "0.05")
    try:
        wait_for(lambda: processes_of(key), 20, "the vertex to start")
        # When the database turns read-only under the running worker
        _read_only_sessions(backend, db_url, True)
        # Then it stops at once (no waiting for its vertex), exit 3, one line naming the cause
        assert w.wait(timeout=15) == 3
    finally:
        stop(w)
        _read_only_sessions(backend, db_url, False)
    safe = Database(url).safe_url
    errors = error_lines(log.read_text())
    assert len(errors) == 1 and errors[0].startswith(f"pipeline-engine: error: database {safe}: it is read-only (")
    assert "stopped: its tracks go back to pending when its lease runs out" in errors[0]
    assert wait_for(lambda: not processes_of(key), 10, "the vertex's processes to end")
    # And the run is resumable: its track is taken back, and another worker finishes it
    assert service.recover(db) == 1
    w = worker(db_url, open(tmp_path / "w2.log", "w"), "--poll", "0.05")
    try:
        assert wait_for(lambda: finished(db, run.id), 30, "another worker to finish the run") == "succeeded"
    finally:
        stop(w)


@needs_root
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_worker_on_a_read_only_sqlite_file_stops_with_one_line(backend, db, db_url, tmp_path):
    service.import_graph(db, {"name": "one", "vertices": [{"name": "v", "script": "true"}]}, seal=True)
    service.start_run(db, "one", detach=True)
    db.dispose()
    here = os.path.dirname(make_url(db_url).database)
    with mounted(tmp_path / "ro", "--bind", here):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(tmp_path / "ro")], check=True, capture_output=True)
        url = f"sqlite:///{tmp_path / 'ro' / 'pe.db'}"
        proc = subprocess.run([*CLI, "--db", url, "worker"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and errors[0].startswith(f"pipeline-engine: error: database {url}: it is read-only:"), \
        proc.stderr


class Relay:
    """A TCP relay to a database server, which the test cuts: every connection through it is
    closed and new ones are refused (a network fault or a server gone, without stopping the
    server, which other tests share)."""

    def __init__(self, port: int):
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self.lock:
                self.socks |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        for s in [self.listener, *self.socks]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.mark.parametrize("command", ["worker", "run"])
@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_a_signal_while_the_database_is_retried_stops_within_the_grace(backend, command, db, db_url, tmp_path):
    relay = Relay(make_url(SERVER_URLS[backend]).port or (3306 if backend == "mariadb" else 5432))
    url = make_url(db_url).set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    key = db.key  # the same through the relay
    script = once_then(tmp_path, "v", "sleep 60")
    service.import_graph(db, {"name": "one", "vertices": [{"name": "v", "script": script, "retries": 1}]}, seal=True)
    log = tmp_path / "out.log"
    if command == "worker":
        run_id = service.start_run(db, "one", detach=True).id
        proc = worker(url, open(log, "w"), "--poll", "0.05", "--grace", "1")
    else:
        proc = subprocess.Popen([*CLI, "--db", url, "run", "one", "--grace", "1"], cwd=ROOT, stdout=open(log, "w"),
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: processes_of(key), 20, "the vertex to start")
        if command == "run":
            run_id = int(log.read_text().split()[1])
        # Given the database unreachable, and the engine retrying it
        relay.cut()
        wait_for(lambda: "retrying" in log.read_text(), 20, "the engine to retry the database")
        # When it gets SIGTERM
        proc.send_signal(signal.SIGTERM)
        # Then after its 1 s grace it ends the vertex and exits as a signal stop does (worker 0, run 130)
        assert proc.wait(timeout=15) == (0 if command == "worker" else 130)
    finally:
        stop(proc)
        relay.cut()
    out = log.read_text()
    assert "Traceback" not in out
    if command == "run":
        assert f"`pipeline-engine resume {run_id}` continues it" in out
    assert wait_for(lambda: not processes_of(key), 10, "the vertex's processes to end")
    # And the run is resumable: its track, left running, is taken back and finished (`resume` for
    # the run `run` owned, any worker for one nobody owns)
    assert run_tracks(db, run_id)["v"].state == "running"
    if command == "run":
        resumed = subprocess.run([*CLI, "--db", db_url, "resume", str(run_id)], cwd=ROOT, capture_output=True,
                                 text=True, timeout=60)
        assert resumed.returncode == 0, resumed.stderr
    else:
        assert service.recover(db) == 1
        w = worker(db_url, open(tmp_path / "w2.log", "w"), "--poll", "0.05")
        try:
            wait_for(lambda: finished(db, run_id), 30, "another worker to finish the run")
        finally:
            stop(w)
    assert finished(db, run_id) == "succeeded"
