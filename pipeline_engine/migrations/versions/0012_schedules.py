"""schedules: a graph's cron or interval in a time zone with its policies, every decision the
schedulers took for one of its fire times (at most one per fire time: the database's unique key
makes it exactly once, whichever scheduler decides), and how each run came to be

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def stamp():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY)


def big_id():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def name():
    return sa.String(200).with_variant(mysql.VARCHAR(200, charset="utf8mb4", collation="utf8mb4_bin"), *MY)


def long_text():
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), *MY)


def upgrade() -> None:
    op.create_table(
        "schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", name(), nullable=False),
        sa.Column("graph", name(), nullable=False),
        sa.Column("cron", sa.String(255), nullable=True),
        sa.Column("every_seconds", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("parameters", long_text(), nullable=False),
        sa.Column("catchup", sa.String(8), nullable=False),
        sa.Column("max_catchup", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.String(8), nullable=False),
        sa.Column("start_at", stamp(), nullable=False),
        sa.Column("end_at", stamp(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_fire_at", stamp(), nullable=True),
        sa.Column("last_fire_at", stamp(), nullable=True),
        sa.Column("created_at", stamp(), nullable=False),
        sa.Column("updated_at", stamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedule"),
        sa.UniqueConstraint("name", name="uq_schedule_name"),
        sa.CheckConstraint("catchup IN ('none', 'latest', 'all')", name="ck_schedule_catchup"),
        sa.CheckConstraint("overlap IN ('allow', 'skip', 'queue', 'cancel')", name="ck_schedule_overlap"),
        sa.CheckConstraint("(cron IS NULL) <> (every_seconds IS NULL)", name="ck_schedule_cron_or_every"),
        sa.CheckConstraint("max_catchup >= 1", name="ck_schedule_max_catchup"),
        **TABLE,
    )
    op.create_index("ix_schedule_next_fire_at", "schedule", ["next_fire_at"])
    op.create_index("ix_schedule_graph", "schedule", ["graph"])
    op.create_table(
        "schedule_decision",
        sa.Column("id", big_id(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("fire_at", stamp(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("pipeline_id", big_id(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_at", stamp(), nullable=False),
        sa.Column("scheduler", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_decision"),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedule.id"], name="fk_schedule_decision_schedule_id_schedule",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["pipeline_id"], ["pipeline.id"], name="fk_schedule_decision_pipeline_id_pipeline",
                                ondelete="SET NULL"),
        # one decision per fire time: a second scheduler's insert waits for the first, then fails
        sa.UniqueConstraint("schedule_id", "fire_at", name="uq_schedule_decision_schedule_id_fire_at"),
        sa.CheckConstraint("decision IN ('created', 'skipped', 'queued', 'missed', 'refused')",
                           name="ck_schedule_decision_decision"),
        **TABLE,
    )
    op.create_index("ix_schedule_decision_pipeline_id", "schedule_decision", ["pipeline_id"])
    # runs made before know no trigger: NULL, read as manual
    op.add_column("pipeline", sa.Column("trigger", sa.String(16), nullable=True))
    op.add_column("pipeline", sa.Column("schedule", name(), nullable=True))
    op.add_column("pipeline", sa.Column("fire_at", stamp(), nullable=True))
    op.create_index("ix_pipeline_schedule_state", "pipeline", ["schedule", "state"])


def downgrade() -> None:
    op.drop_index("ix_pipeline_schedule_state", table_name="pipeline")
    for column in ("fire_at", "schedule", "trigger"):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE pipeline DROP COLUMN {column}")  # in place: no rebuild
        else:
            op.drop_column("pipeline", column)
    op.drop_table("schedule_decision")
    op.drop_table("schedule")
