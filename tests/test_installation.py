"""A database is known by the installation id it records, not by the spelling of its URL: workers
that reach it as ``localhost`` and ``127.0.0.1`` (or through a relative and an absolute SQLite
path) find each other's leftover processes and write their log files into one directory."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from conftest import ROOT, finished, run_tracks, stop, wait_for, worker
from sqlalchemy import text
from sqlalchemy.engine import make_url
from test_durability import _has_marker, processes_of

from pipeline_engine import executor, service
from pipeline_engine.db import Database


def other_spelling(backend: str, db_url: str) -> str:
    """Another URL of the test's database: a relative SQLite path (from ROOT, where the test's
    workers run), or the server as ``localhost`` instead of ``127.0.0.1`` with a query option."""
    url = make_url(db_url)
    if backend == "sqlite":
        return f"sqlite:///{os.path.relpath(url.database, ROOT)}"
    assert url.host == "127.0.0.1"
    return url.set(host="localhost").update_query_dict({"connect_timeout": "10"}).render_as_string(
        hide_password=False)


def test_every_spelling_of_the_url_has_the_same_key(backend, db, db_url, monkeypatch):
    # Given two handles on one database through differently spelled URLs
    monkeypatch.chdir(ROOT)
    a, b = Database(db_url, auto_migrate=False), Database(other_spelling(backend, db_url), auto_migrate=False)
    try:
        assert a.safe_url != b.safe_url
        # Then they name it alike, from the one id the database records
        assert a.key == b.key == db.key
        assert a.key.startswith({"mariadb": "mysql"}.get(backend, backend) + "-")
        with a.engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM installation")).scalars().all() == [a.installation_id]
    finally:
        a.dispose()
        b.dispose()


def _lock_waits(backend: str, conn, database: str) -> int:
    """Sessions of ``database`` waiting to insert the installation row."""
    if backend == "postgresql":
        sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'"
    else:
        sql = ("SELECT count(*) FROM information_schema.processlist WHERE db = :db"
               " AND info LIKE 'INSERT INTO installation%'")
    try:
        return conn.execute(text(sql), {"db": database}).scalar_one()
    finally:
        conn.rollback()  # PostgreSQL keeps one snapshot of pg_stat_activity per transaction


def test_concurrent_first_users_agree_on_one_installation_id(backend, db_url, tmp_path):
    """Six processes (three per spelling) use a database nobody has used yet, at once. On the
    servers the race is forced: a transaction of the test holds the row while every process has
    looked, found none and waits to insert its own; then it rolls back, and they all compete."""
    gate = tmp_path / "go"
    code = ("import os, sys, time\n"
            "from pipeline_engine.db import Database\n"
            "db = Database(sys.argv[1], auto_migrate=False)\n"
            "with db.engine.connect(): pass\n"
            f"while not os.path.exists({str(gate)!r}): time.sleep(0.001)\n"
            "print(db.key)\n")
    urls = [db_url, other_spelling(backend, db_url)] * 3
    probe = Database(db_url, auto_migrate=False)
    blocker = probe.engine.connect() if backend != "sqlite" else None
    procs = []
    try:
        if blocker is not None:
            blocker.begin()
            blocker.execute(text("INSERT INTO installation (slot, id, created_at)"
                                 " VALUES (1, 'blocker', '2026-01-01 00:00:00')"))
        procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for url in urls]
        if blocker is None:
            time.sleep(1.5)  # let them import and connect: then they race
            gate.touch()
        else:
            gate.touch()
            with probe.engine.connect() as watch:
                wait_for(lambda: _lock_waits(backend, watch, make_url(db_url).database) == len(procs), 30,
                         "every process to wait for the row")
            blocker.rollback()
        outs = [p.communicate(timeout=60) for p in procs]
        # Then each got the same key, and the database holds one id
        assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
        keys = {out.strip() for out, _ in outs}
        assert len(keys) == 1, keys
        with probe.engine.connect() as conn:
            (only,) = conn.execute(text("SELECT id FROM installation")).scalars().all()
        assert only != "blocker" and keys == {probe.key} and probe.key.endswith("-" + only)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if blocker is not None:
            blocker.close()
        probe.dispose()


def test_a_worker_through_another_spelling_kills_the_leftover_of_a_dead_one(backend, db, db_url, log_dir, tmp_path):
    # Given a worker, reaching the database through one spelling, killed while its vertex runs
    flag = tmp_path / "again"
    script = f'echo "attempt $PIPELINE_ENGINE_TRACK"; if [ -e {flag} ]; then echo second; else touch {flag}; sleep 60; fi'
    service.import_graph(db, {"name": "one", "vertices": [{"name": "v", "script": script, "retries": 1}]}, seal=True)
    run = service.start_run(db, "one", detach=True)
    a = worker(db_url, open(tmp_path / "a.log", "w"), "--poll", "0.05")
    wait_for(lambda: processes_of(db.key), 20, "the first attempt to start")
    # its output goes through the worker: killed before it read the first line, the line is lost
    log_file = os.path.join(log_dir, db.key, f"run-{run.id}", "v.log")
    wait_for(lambda: os.path.exists(log_file) and "attempt " in open(log_file).read().replace("--- attempt", ""),
             20, "the first attempt's first line in its log")
    a.kill()
    a.wait()
    first = executor.marker(db.key, run_tracks(db, run.id)["v"].id, 1)
    assert [p for p in processes_of(db.key) if _has_marker(p, first)]  # a SIGKILLed worker leaves them behind
    # When a worker through the other spelling starts on this host
    b = worker(other_spelling(backend, db_url), open(tmp_path / "b.log", "w"), "--poll", "0.05")
    try:
        # Then it takes the track back, killing the first attempt's processes, and runs it again
        assert wait_for(lambda: finished(db, run.id), 30, "the other worker to finish the run") == "succeeded"
        assert not [p for p in processes_of(db.key) if _has_marker(p, first)]
    finally:
        stop(b)
    track = run_tracks(db, run.id)["v"]
    assert (track.state, track.attempt) == ("succeeded", 2)
    # And both attempts wrote into one log file, in the database's one directory
    assert os.listdir(log_dir) == [db.key]
    path = os.path.join(log_dir, db.key, f"run-{run.id}", "v.log")
    assert track.log_path == path
    log = open(path).read()
    assert f"attempt {first}" in log and f"attempt {executor.marker(db.key, track.id, 2)}" in log
    assert "second" in log
