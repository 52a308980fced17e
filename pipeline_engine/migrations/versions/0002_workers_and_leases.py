"""workers, pipeline ownership, and the index that finds a run's unfinished tracks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def stamp():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY)


def upgrade() -> None:
    op.create_table(
        "worker",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("lease", sa.Double(), nullable=False),
        sa.Column("started_at", stamp(), nullable=False),
        sa.Column("heartbeat_at", stamp(), nullable=False),
        sa.Column("stopped_at", stamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_worker"),
        sa.UniqueConstraint("name", name="uq_worker_name"),
        **TABLE,
    )
    op.add_column("pipeline", sa.Column("owner", sa.String(255), nullable=True))
    op.add_column("pipeline", sa.Column("secret_inputs", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    op.create_index("ix_track_pipeline_id_state", "track", ["pipeline_id", "state"])
    op.create_index("ix_track_worker", "track", ["worker"])


def downgrade() -> None:
    op.drop_index("ix_track_worker", "track")
    # MySQL: the foreign key on track.pipeline_id may use this index; the unique
    # (pipeline_id, vertex_id) index serves it again once this one is gone
    op.drop_index("ix_track_pipeline_id_state", "track")
    with op.batch_alter_table("pipeline") as batch:
        batch.drop_column("secret_inputs")
        batch.drop_column("owner")
    op.drop_table("worker")
