"""concurrency pools: the pool table, the pool a vertex names, and the pool of each track

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def name():
    # compared byte for byte on every backend, like graph and vertex names
    return sa.String(200).with_variant(mysql.VARCHAR(200, charset="utf8mb4", collation="utf8mb4_bin"), *MY)


def stamp():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY)


def upgrade() -> None:
    op.create_table(
        "pool",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", name(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", stamp(), nullable=False),
        sa.Column("updated_at", stamp(), nullable=False),
        sa.CheckConstraint("size >= 0", name="ck_pool_size"),
        sa.PrimaryKeyConstraint("id", name="pk_pool"),
        sa.UniqueConstraint("name", name="uq_pool_name"),
        **TABLE,
    )
    op.add_column("vertex", sa.Column("pool", name(), nullable=True))
    # no index on it: a pool's running tracks are counted among the running ones, which the
    # index track(state, priority) finds (a few per worker thread); one more index with the
    # state in it would cost every state change of every track
    op.add_column("track", sa.Column("pool", name(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("track") as batch:
        batch.drop_column("pool")
    with op.batch_alter_table("vertex") as batch:
        batch.drop_column("pool")
    op.drop_table("pool")
