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
