"""attempts: one row per ended attempt of a track (its worker, start, end, outcome, exit code and
a short error), so that a run's timeline shows every attempt, retries and lost leases included,
where the track keeps only its last one. Runs made before have no rows: their tracks' last
attempts stay where they were

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def stamp():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY)


def big_id():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "attempt",
        sa.Column("track_id", big_id(), autoincrement=False, nullable=False),
        sa.Column("attempt", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("started_at", stamp(), nullable=False),
        sa.Column("finished_at", stamp(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        # the primary key leads with the track: its attempts are found (and cascaded) by it
        sa.PrimaryKeyConstraint("track_id", "attempt", name="pk_attempt"),
        sa.ForeignKeyConstraint(["track_id"], ["track.id"], name="fk_attempt_track_id_track", ondelete="CASCADE"),
        sa.CheckConstraint("outcome IN ('succeeded', 'failed', 'timed_out', 'lost', 'cancelled')",
                           name=op.f("ck_attempt_outcome")),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_attempt_attempt")),
        **TABLE,
    )


def downgrade() -> None:
    op.drop_table("attempt")
