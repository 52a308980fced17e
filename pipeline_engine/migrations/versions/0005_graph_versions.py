"""graph versions, and ids that are never reused

A graph name has versions 1, 2, 3...: each is a ``graph`` row, unique by (name, version);
every existing graph becomes version 1 of its name. On SQLite the graph, pipeline and track
tables are rebuilt with AUTOINCREMENT, so that the id of a deleted run (and its log directory)
is never given to a new one; MariaDB/MySQL and PostgreSQL never reuse an id already.

SQLite rebuilds a table by copying it: the migration must run with its foreign keys off (the
``Database`` does that and checks them before it commits), or dropping the old graph table
would delete every vertex.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


# SQLite cannot change a table's constraints or make its key AUTOINCREMENT: the table is
# rebuilt (a new one, the rows copied, the old one dropped, the new one renamed), written out
# here rather than with batch mode so that sql/sqlite.sql is the same every time it is made.

def _graph(name: str, *, versions: bool) -> list:
    return [
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(), nullable=True),
        *([sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)] if versions else []),
        sa.PrimaryKeyConstraint("id", name="pk_graph"),
        sa.UniqueConstraint(*(("name", "version") if versions else ("name",)),
                            name="uq_graph_name_version" if versions else "uq_graph_name"),
        sa.CheckConstraint("status IN ('draft', 'checked', 'sealed')", name="ck_graph_status"),
    ]


def _pipeline(name: str) -> list:
    return [
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("graph_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("workers", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("secret_inputs", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline"),
        sa.ForeignKeyConstraint(["graph_id"], ["graph.id"], ondelete="RESTRICT", name="fk_pipeline_graph_id_graph"),
        sa.CheckConstraint("state IN ('running', 'succeeded', 'failed', 'cancelled')", name="ck_pipeline_state"),
    ]


def _track(name: str) -> list:
    return [
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pipeline_id", sa.Integer(), nullable=False),
        sa.Column("vertex_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("waiting_on", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Double(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("script", sa.Text(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("stdout", sa.Text(), nullable=False),
        sa.Column("stderr", sa.Text(), nullable=False),
        sa.Column("log_path", sa.String(1024), nullable=True),
        sa.Column("duration", sa.Double(), nullable=True),
        sa.Column("pool", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_track"),
        sa.ForeignKeyConstraint(["pipeline_id"], ["pipeline.id"], ondelete="CASCADE",
                                name="fk_track_pipeline_id_pipeline"),
        sa.ForeignKeyConstraint(["vertex_id"], ["vertex.id"], ondelete="RESTRICT", name="fk_track_vertex_id_vertex"),
        sa.UniqueConstraint("pipeline_id", "vertex_id", name="uq_track_pipeline_id_vertex_id"),
        sa.CheckConstraint("state IN ('waiting', 'pending', 'running', 'succeeded', 'failed', 'upstream_failed',"
                           " 'cancelled')", name="ck_track_state"),
        sa.CheckConstraint("attempt >= 0", name="ck_track_attempt"),
    ]


_INDEXES = {
    "graph": [],
    "pipeline": [("ix_pipeline_graph_id_created_at", ["graph_id", "created_at"]), ("ix_pipeline_state", ["state"])],
    "track": [("ix_track_state_priority", ["state", "priority"]), ("ix_track_vertex_id", ["vertex_id"]),
              ("ix_track_pipeline_id_state", ["pipeline_id", "state"]), ("ix_track_worker", ["worker"]),
              ("ix_track_vertex_id_state", ["vertex_id", "state"])],
}


def _rebuild(table: str, definition, copied: list[str], *, autoincrement: bool) -> None:
    new = f"_pe_new_{table}"
    name, *parts = definition(new)
    op.create_table(name, *parts, sqlite_autoincrement=autoincrement)
    columns = ", ".join(copied)
    op.execute(f"INSERT INTO {new} ({columns}) SELECT {columns} FROM {table}")
    op.drop_table(table)
    op.rename_table(new, table)
    for index, on in _INDEXES[table]:
        op.create_index(index, table, on)


_GRAPH = ["id", "name", "description", "status", "created_at", "updated_at", "sealed_at"]
_PIPELINE = ["id", "graph_id", "name", "state", "params", "workers", "created_at", "started_at", "finished_at",
             "owner", "secret_inputs"]
_TRACK = ["id", "pipeline_id", "vertex_id", "state", "attempt", "max_attempts", "waiting_on", "priority", "inputs",
          "script", "exit_code", "error", "worker", "heartbeat_at", "started_at", "finished_at", "stdout", "stderr",
          "log_path", "duration", "pool"]


def upgrade() -> None:
    if not _sqlite():
        op.add_column("graph", sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False))
        op.drop_constraint("uq_graph_name", "graph", type_="unique")
        op.create_unique_constraint("uq_graph_name_version", "graph", ["name", "version"])
        return
    _rebuild("graph", lambda n: _graph(n, versions=True), _GRAPH, autoincrement=True)
    _rebuild("pipeline", _pipeline, _PIPELINE, autoincrement=True)
    _rebuild("track", _track, _TRACK, autoincrement=True)


def downgrade() -> None:
    # Only a database with one version per name goes back: the unique name refuses more.
    if not _sqlite():
        op.drop_constraint("uq_graph_name_version", "graph", type_="unique")
        op.create_unique_constraint("uq_graph_name", "graph", ["name"])
        op.drop_column("graph", "version")
        return
    _rebuild("graph", lambda n: _graph(n, versions=False), _GRAPH, autoincrement=False)
    _rebuild("pipeline", _pipeline, _PIPELINE, autoincrement=False)
    _rebuild("track", _track, _TRACK, autoincrement=False)
