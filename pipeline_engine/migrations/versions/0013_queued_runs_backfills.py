"""queued runs and backfills: a run may wait its turn in the new state ``queued`` (a schedule's
previous run still going, a backfill's room full); a backfill is recorded with its bounds and
how many of its runs may run at once; a run may carry a key that no other run has (a
backfill's graph and fire time: running a backfill again creates no run twice)

SQLite changes a CHECK constraint by rebuilding the table, written out as in 0008: ids stay
AUTOINCREMENT from the old table's mark, foreign keys are off while it is done (the
``Database`` sees to it) and checked before it commits.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
OLD_STATES = "state IN ('running', 'succeeded', 'failed', 'cancelled')"
NEW_STATES = "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"

_NEW = "_pe_new_pipeline"
_KEPT = ["id", "graph_id", "name", "state", "params", "created_at", "started_at", "finished_at", "owner",
         "secret_inputs", "started_by", "trigger", "schedule", "fire_at"]
_INDEXES = [("ix_pipeline_graph_id_created_at", ["graph_id", "created_at"]), ("ix_pipeline_state", ["state"]),
            ("ix_pipeline_schedule_state", ["schedule", "state"])]


def stamp():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY)


def name():
    return sa.String(200).with_variant(mysql.VARCHAR(200, charset="utf8mb4", collation="utf8mb4_bin"), *MY)


def long_text():
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), *MY)


def _sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def upgrade() -> None:
    op.create_table(
        "backfill",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("graph", name(), nullable=False),
        sa.Column("schedule", name(), nullable=True),
        sa.Column("cron", sa.String(255), nullable=True),
        sa.Column("every_seconds", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("parameters", long_text(), nullable=False),
        sa.Column("from_at", stamp(), nullable=False),
        sa.Column("to_at", stamp(), nullable=False),
        sa.Column("max_active", sa.Integer(), nullable=False),
        sa.Column("created_at", stamp(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_backfill"),
        sa.CheckConstraint("max_active >= 1", name="ck_backfill_max_active"),
        sqlite_autoincrement=True,
        **TABLE,
    )
    if not _sqlite():
        op.execute("ALTER TABLE pipeline DROP CONSTRAINT ck_pipeline_state")
        op.execute(f"ALTER TABLE pipeline ADD CONSTRAINT ck_pipeline_state CHECK ({NEW_STATES})")
        op.add_column("pipeline", sa.Column("backfill_id", sa.Integer(), nullable=True))
        op.add_column("pipeline", sa.Column("run_key", sa.String(255), nullable=True))
        op.create_foreign_key("fk_pipeline_backfill_id_backfill", "pipeline", "backfill", ["backfill_id"], ["id"],
                              ondelete="SET NULL")
    else:
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
            sa.Column("started_by", sa.String(255), nullable=True),
            sa.Column("trigger", sa.String(16), nullable=True),
            sa.Column("schedule", sa.String(200), nullable=True),
            sa.Column("fire_at", sa.DateTime(), nullable=True),
            sa.Column("backfill_id", sa.Integer(), nullable=True),
            sa.Column("run_key", sa.String(255), nullable=True),
            sa.PrimaryKeyConstraint("id", name="pk_pipeline"),
            sa.ForeignKeyConstraint(["graph_id"], ["graph.id"], ondelete="RESTRICT", name="fk_pipeline_graph_id_graph"),
            sa.ForeignKeyConstraint(["backfill_id"], ["backfill.id"], ondelete="SET NULL",
                                    name="fk_pipeline_backfill_id_backfill"),
            # op.f: named for the table it becomes, not the one it is made as
            sa.CheckConstraint(NEW_STATES, name=op.f("ck_pipeline_state")),
            sqlite_autoincrement=True,
        )
        # the new table starts from the old one's AUTOINCREMENT mark (see 0008)
        op.execute(f"INSERT INTO sqlite_sequence (name, seq) SELECT '{_NEW}', seq FROM sqlite_sequence"
                   " WHERE name = 'pipeline'")
        columns = ", ".join(_KEPT)
        op.execute(f"INSERT INTO {_NEW} ({columns}) SELECT {columns} FROM pipeline")
        op.drop_table("pipeline")
        op.rename_table(_NEW, "pipeline")
        for index, on in _INDEXES:
            op.create_index(index, "pipeline", on)
    op.create_index("uq_pipeline_run_key", "pipeline", ["run_key"], unique=True)
    op.create_index("ix_pipeline_backfill_id_state", "pipeline", ["backfill_id", "state"])


def downgrade() -> None:
    # queued runs cannot be kept in the old states: they are cancelled
    op.execute("UPDATE pipeline SET state = 'cancelled' WHERE state = 'queued'")
    if not _sqlite():  # before its index, which MariaDB keeps for it
        op.drop_constraint("fk_pipeline_backfill_id_backfill", "pipeline", type_="foreignkey")
    op.drop_index("ix_pipeline_backfill_id_state", table_name="pipeline")
    op.drop_index("uq_pipeline_run_key", table_name="pipeline")
    if not _sqlite():
        op.drop_column("pipeline", "run_key")
        op.drop_column("pipeline", "backfill_id")
        op.execute("ALTER TABLE pipeline DROP CONSTRAINT ck_pipeline_state")
        op.execute(f"ALTER TABLE pipeline ADD CONSTRAINT ck_pipeline_state CHECK ({OLD_STATES})")
    else:
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
            sa.Column("started_by", sa.String(255), nullable=True),
            sa.Column("trigger", sa.String(16), nullable=True),
            sa.Column("schedule", sa.String(200), nullable=True),
            sa.Column("fire_at", sa.DateTime(), nullable=True),
            sa.PrimaryKeyConstraint("id", name="pk_pipeline"),
            sa.ForeignKeyConstraint(["graph_id"], ["graph.id"], ondelete="RESTRICT", name="fk_pipeline_graph_id_graph"),
            sa.CheckConstraint(OLD_STATES, name=op.f("ck_pipeline_state")),
            sqlite_autoincrement=True,
        )
        op.execute(f"INSERT INTO sqlite_sequence (name, seq) SELECT '{_NEW}', seq FROM sqlite_sequence"
                   " WHERE name = 'pipeline'")
        columns = ", ".join(_KEPT)
        op.execute(f"INSERT INTO {_NEW} ({columns}) SELECT {columns} FROM pipeline")
        op.drop_table("pipeline")
        op.rename_table(_NEW, "pipeline")
        for index, on in _INDEXES:
            op.create_index(index, "pipeline", on)
    op.drop_table("backfill")
