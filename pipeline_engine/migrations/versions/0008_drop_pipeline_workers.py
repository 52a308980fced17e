"""a run's thread count is the worker's, not the run's: the pipeline.workers column, written by
every run and read by nothing, goes

``run --workers N`` still sets the threads of the worker it starts; it is no longer stored.

SQLite drops the column by rebuilding the table, written out as in 0005 (batch mode lists the
copied table's constraints and indexes in an order that changes from one process to the next, so
sql/sqlite.sql would not be the same every time it is made); ids stay AUTOINCREMENT. As in 0005
the ``Database`` runs it with foreign keys off, so dropping the old table does not delete the
tracks (by cascade), and checks them before it commits.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


_NEW = "_pe_new_pipeline"
_KEPT = ["id", "graph_id", "name", "state", "params", "created_at", "started_at", "finished_at", "owner",
         "secret_inputs"]
_INDEXES = [("ix_pipeline_graph_id_created_at", ["graph_id", "created_at"]), ("ix_pipeline_state", ["state"])]


def _sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def upgrade() -> None:
    if not _sqlite():
        op.drop_column("pipeline", "workers")
        return
    # the pipeline table of 0005 without workers (SQLite's own types: the table exists only there)
    op.create_table(
        _NEW,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("graph_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("secret_inputs", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline"),
        sa.ForeignKeyConstraint(["graph_id"], ["graph.id"], ondelete="RESTRICT", name="fk_pipeline_graph_id_graph"),
        # op.f: named for the table it becomes, not the one it is made as
        sa.CheckConstraint("state IN ('running', 'succeeded', 'failed', 'cancelled')",
                           name=op.f("ck_pipeline_state")),
        sqlite_autoincrement=True,
    )
    # the new table starts from the old one's AUTOINCREMENT mark, not from its greatest id left:
    # the id of a deleted newest run is not given again (SQLite keeps the mark in sqlite_sequence,
    # which 0005's AUTOINCREMENT tables made; the copy below raises it, never lowers it)
    op.execute(f"INSERT INTO sqlite_sequence (name, seq) SELECT '{_NEW}', seq FROM sqlite_sequence"
               " WHERE name = 'pipeline'")
    columns = ", ".join(_KEPT)
    op.execute(f"INSERT INTO {_NEW} ({columns}) SELECT {columns} FROM pipeline")
    op.drop_table("pipeline")
    op.rename_table(_NEW, "pipeline")
    for index, on in _INDEXES:
        op.create_index(index, "pipeline", on)


def downgrade() -> None:
    # a nullable column is added in place on every backend, SQLite too (no rebuild); the runs
    # made meanwhile have none
    op.add_column("pipeline", sa.Column("workers", sa.Integer(), nullable=True))
