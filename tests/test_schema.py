"""The schema is owned by the migrations: models, migrations and sql/ agree on every backend."""
import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from pipeline_engine import migrate
from pipeline_engine.db import Database
from pipeline_engine.models import Base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def schema_diff(database: Database):
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "version_table": migrate.VERSION_TABLE})
        return compare_metadata(context, Base.metadata)


def test_migrations_build_exactly_the_models(db):
    assert schema_diff(db) == []


def test_sql_files_are_generated_from_the_current_migrations():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen-sql"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"run scripts/gen-sql: {result.stdout}"


def _statements(sql: str):
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";\n") if s.strip() and s.strip().rstrip(";") not in ("BEGIN", "COMMIT")]


@pytest.mark.parametrize("server", ["sqlite", "mariadb", "postgresql"])
def test_the_ddl_for_dbas_builds_the_same_schema(server, request, tmp_path):
    from conftest import backend_url_empty

    url = f"sqlite:///{tmp_path}/ddl.db" if server == "sqlite" else backend_url_empty(request, server)
    name = {"mariadb": "mysql"}.get(server, server)
    with open(os.path.join(ROOT, "sql", f"{name}.sql"), encoding="utf-8") as f:
        sql = f.read()
    database = Database(url, auto_migrate=False)
    try:
        with database.engine.begin() as conn:
            for statement in _statements(sql):
                conn.execute(text(statement.rstrip(";")))
        assert schema_diff(database) == []
        with database.engine.connect() as conn:
            assert migrate.current_revision(conn) == migrate.head_revision()
    finally:
        database.dispose()


def test_migrations_downgrade_and_upgrade_again(db):
    with db.engine.begin() as conn:
        from alembic import command

        command.downgrade(migrate.config(connection=conn), "base")
        assert migrate.current_revision(conn) is None
    db.upgrade()
    assert schema_diff(db) == []


def test_every_foreign_key_is_indexed(db):
    from sqlalchemy import inspect

    inspector = inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        leading = [tuple(ix["column_names"]) for ix in inspector.get_indexes(table.name)]
        leading += [tuple(uq["column_names"]) for uq in inspector.get_unique_constraints(table.name)]
        leading.append(tuple(inspector.get_pk_constraint(table.name)["constrained_columns"]))
        for fk in inspector.get_foreign_keys(table.name):
            columns = tuple(fk["constrained_columns"])
            assert any(ix[:len(columns)] == columns for ix in leading), (table.name, columns)


# --- 0008: pipeline.workers goes ----------------------------------------------------------------

_RUN_COLUMNS = "id, graph_id, name, state, params, created_at, started_at, finished_at, owner, secret_inputs"
_TRACK_COLUMNS = ("id, pipeline_id, vertex_id, state, attempt, max_attempts, waiting_on, priority, inputs, script,"
                  " exit_code, error, worker, heartbeat_at, started_at, finished_at, stdout, stderr, log_path,"
                  " duration, pool, not_before")


@pytest.fixture
def empty_url(request, backend, tmp_path):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/old.db"
    from conftest import backend_url_empty

    return backend_url_empty(request, backend)


def _snapshot(conn) -> tuple[list, list]:
    return (conn.execute(text(f"SELECT {_RUN_COLUMNS} FROM pipeline ORDER BY id")).all(),
            conn.execute(text(f"SELECT {_TRACK_COLUMNS} FROM track ORDER BY id")).all())


def _pipeline_columns(database: Database) -> dict:
    from sqlalchemy import inspect

    return {c["name"]: c for c in inspect(database.engine).get_columns("pipeline")}


def test_dropping_pipeline_workers_keeps_every_run_and_its_tracks(empty_url):
    from datetime import datetime

    from conftest import run_tracks
    from pipeline_engine import service

    old = Database(empty_url, auto_migrate=False)
    stamp, later = datetime(2026, 11, 30, 12, 0, 0, 250000), datetime(2026, 11, 30, 12, 1, 30, 500000)
    try:
        # Given a database at 0007 with runs of each kind, their tracks, and a deleted newest run
        with old.engine.connect() as conn:
            with conn.begin():
                migrate.upgrade(conn, "0007")
            with conn.begin():
                conn.execute(text("INSERT INTO graph (name, description, status, created_at, updated_at, sealed_at)"
                                  " VALUES ('g', '', 'sealed', :t, :t, :t)"), {"t": stamp})
                gid = conn.execute(text("SELECT id FROM graph WHERE name = 'g'")).scalar()
                for position, v in enumerate(("a", "b"), 1):
                    conn.execute(text("INSERT INTO vertex (graph_id, name, position, script, description, inputs,"
                                      " retries) VALUES (:g, :v, :p, :s, '', '{}', 0)"),
                                 {"g": gid, "v": v, "p": position, "s": f"echo {v}"})
                conn.execute(text("INSERT INTO edge (graph_id, tail_id, head_id) SELECT a.graph_id, a.id, b.id"
                                  " FROM vertex a, vertex b WHERE a.name = 'a' AND b.name = 'b'"))
                va, vb = conn.execute(text("SELECT id FROM vertex ORDER BY position")).scalars().all()
                runs = [("nightly", "succeeded", '{"day": "mon"}', 4, stamp, later, None, False),
                        (None, "running", "{}", None, stamp, None, "w1", True),
                        ("x", "failed", "{}", 1, stamp, later, None, False),
                        (None, "cancelled", "{}", 2, stamp, later, None, False)]
                for name, state, params, workers, started, finished, owner, secret in runs:
                    conn.execute(text("INSERT INTO pipeline (graph_id, name, state, params, workers, created_at,"
                                      " started_at, finished_at, owner, secret_inputs) VALUES"
                                      " (:g, :n, :s, :p, :w, :t, :t, :f, :o, :x)"),
                                 {"g": gid, "n": name, "s": state, "p": params, "w": workers, "t": started,
                                  "f": finished, "o": owner, "x": secret})
                ids = conn.execute(text("SELECT id FROM pipeline ORDER BY id")).scalars().all()
                conn.execute(text("DELETE FROM pipeline WHERE id = :r"), {"r": ids[-1]})
                for run, (state_a, state_b) in zip(ids[:3], [("succeeded", "succeeded"), ("succeeded", "running"),
                                                             ("failed", "upstream_failed")]):
                    for vertex, state, waiting in ((va, state_a, 0), (vb, state_b, 1)):
                        conn.execute(text("INSERT INTO track (pipeline_id, vertex_id, state, attempt, max_attempts,"
                                          " waiting_on, priority, inputs, script, exit_code, worker, heartbeat_at,"
                                          " started_at, finished_at, stdout, stderr, duration, pool) VALUES"
                                          " (:r, :v, :s, 1, 2, :w, 1.5, '{}', 'echo', :e, 'w1', :t, :t, :f,"
                                          " 'out', 'err', 90.25, NULL)"),
                                     {"r": run, "v": vertex, "s": state, "w": waiting, "t": stamp,
                                      "e": 0 if state == "succeeded" else None,
                                      "f": later if state != "running" else None})
            with conn.begin():
                before = _snapshot(conn)
        assert "workers" in _pipeline_columns(old)

        # When it is upgraded
        assert old.upgrade() == ("0007", migrate.head_revision())

        # Then every run and track is there, column for column, and workers is not
        with old.engine.connect() as conn:
            assert _snapshot(conn) == before
        assert "workers" not in _pipeline_columns(old)
        assert [(r.id, r.name, r.state) for r in service.list_runs(old)] == [
            (ids[2], "x", "failed"), (ids[1], None, "running"), (ids[0], "nightly", "succeeded")]
        assert {v: t.state for v, t in run_tracks(old, ids[1]).items()} == {"a": "succeeded", "b": "running"}
        # ids are still never reused, and a new run starts (its thread count is not stored)
        new_run = service.start_run(old, "g", workers=3, detach=True)
        assert new_run.id > ids[-1] and set(run_tracks(old, new_run.id)) == {"a", "b"}
        # the tracks' foreign key still points at the (rebuilt) pipeline table: deleting a run deletes them
        with old.engine.begin() as conn:
            conn.execute(text("DELETE FROM pipeline WHERE id = :r"), {"r": ids[0]})
            assert conn.execute(text("SELECT count(*) FROM track WHERE pipeline_id = :r"), {"r": ids[0]}).scalar() == 0
        if old.dialect == "sqlite":
            with old.engine.connect() as conn:
                assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
                assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
                ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'pipeline'")).scalar()
                assert "AUTOINCREMENT" in ddl and "fk_pipeline_graph_id_graph" in ddl
                assert "_pe_new_pipeline" not in conn.execute(text("SELECT group_concat(sql) FROM sqlite_master"
                                                                   " WHERE sql IS NOT NULL")).scalar()

        # And a downgrade gives the column back, nullable and empty, with the runs as they were
        with old.engine.begin() as conn:
            from alembic import command

            command.downgrade(migrate.config(connection=conn), "0007")
        assert _pipeline_columns(old)["workers"]["nullable"] is True
        with old.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM pipeline WHERE workers IS NOT NULL")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM pipeline")).scalar() == 3
    finally:
        old.dispose()
