"""who did what: the audit log, who started each run, and the Idempotency-Keys of run starts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def stamp():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY)


def big_id():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # runs made before know no starter: NULL
    op.add_column("pipeline", sa.Column("started_by", sa.String(255), nullable=True))
    op.create_table(
        "audit",
        sa.Column("id", big_id(), nullable=False),
        sa.Column("at", stamp(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
        sqlite_autoincrement=True,  # ids are never reused, as a log's should not be
        **TABLE,
    )
    op.create_table(
        "idempotency",
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("pipeline_id", big_id(), nullable=False),
        sa.Column("created_at", stamp(), nullable=False),
        sa.ForeignKeyConstraint(["pipeline_id"], ["pipeline.id"], name="fk_idempotency_pipeline_id_pipeline",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("actor", "key", name="pk_idempotency"),
        **TABLE,
    )
    op.create_index("ix_idempotency_pipeline_id", "idempotency", ["pipeline_id"])


def downgrade() -> None:
    op.drop_table("idempotency")
    op.drop_table("audit")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops a column in place (3.35+): no rebuild, so the ids' counter is kept
        op.execute("ALTER TABLE pipeline DROP COLUMN started_by")
    else:
        op.drop_column("pipeline", "started_by")
